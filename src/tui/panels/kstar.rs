//! The k* panel: the k* distribution of the set `v` chooses (clean, the
//! selected perturbation and level, a PGD setting). Per model the count of
//! classes in each pattern (A fractured, B overlapped, C clustered), the
//! mean k* and the mean class accuracy, each beside the clean set's
//! (clean→shown) when another set is shown; below, the selected model's
//! classes (n, mean, std, skew, pattern, accuracy, a histogram of k*/n),
//! scrolled with ↑↓.

use super::common::{header_table, model_col_width, panel_block, ACCENT, DIM};
use crate::metrics::kstar::KstarReport;
use crate::tui::app::{metric_name, App, JobState, KstarShow, Panel};
use crate::tui::kview;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Points};
use ratatui::widgets::{Cell, Paragraph, Row};
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let extra = format!(
        "{} · layer {} · {} (v/t/d)",
        app.kstar_set_label(),
        app.tap,
        metric_name(app.metric)
    );
    let block = panel_block(app, Panel::Kstar, extra);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = app.n_models() as u16;
    let [summary, table] =
        Layout::vertical([Constraint::Length(n + 1), Constraint::Fill(1)]).areas(inner);
    // Pattern counts per model.
    let mw = model_col_width(app) as usize;
    let mut lines = vec![Line::from(vec![Span::styled(
        format!(
            "{:<mw$}{:>7} {:>8} {:>8} {:>12} {:>12}",
            "model", "A frac.", "B overl.", "C clust.", "mean k*", "acc"
        ),
        Style::new().bold(),
    )])];
    for m in 0..app.n_models() {
        let name = if m == app.model {
            format!("▶ {}", app.meta.models[m])
        } else {
            format!("  {}", app.meta.models[m])
        };
        let body = match (app.state(&app.kstar_key(m)), app.kstar(m)) {
            (_, Some(r)) => {
                // "clean→shown" when another set than the clean one is shown.
                let clean = app.kstar_clean(m);
                let g = kview::groups(r);
                let gc = clean.map(kview::groups);
                let count = |i: usize| match &gc {
                    Some(c) => format!("{}→{}", c[i].count, g[i].count),
                    None => g[i].count.to_string(),
                };
                let num = |f: fn(&KstarReport) -> Option<f64>| {
                    let v =
                        |r: &KstarReport| f(r).map_or_else(|| "-".into(), |v| format!("{v:.3}"));
                    match clean {
                        Some(c) => format!("{}→{}", v(c), v(r)),
                        None => v(r),
                    }
                };
                format!(
                    "{:>7} {:>8} {:>8} {:>12} {:>12}",
                    count(0),
                    count(1),
                    count(2),
                    num(kview::overall_mean),
                    num(kview::overall_accuracy)
                )
            }
            (JobState::Running { done, total }, _) => {
                format!("computing features {done}/{total}")
            }
            (JobState::Failed(e), _) => format!("error: {e}"),
            (JobState::Queued, _) => "queued".into(),
            _ => String::new(),
        };
        let style = if m == app.model {
            Style::new().bold()
        } else {
            Style::new()
        };
        lines.push(Line::styled(format!("{name:<mw$}{body}"), style));
    }
    f.render_widget(Paragraph::new(lines), summary);
    if app.kstar_show != KstarShow::Classes {
        scatter(f, app, table);
        return;
    }
    // Classes of the selected model.
    let Some(r) = app.kstar(app.model) else {
        return;
    };
    let cls = kview::classes(r);
    // A caption naming the model the classes belong to, and what part of the
    // list shows when it does not fit.
    let [caption, table] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(table);
    let visible = (table.height as usize).saturating_sub(1);
    let first = app.kstar_scroll.min(cls.len().saturating_sub(1));
    let last = (first + visible).min(cls.len());
    let range = if first > 0 || last < cls.len() {
        format!(" · {}-{} of {} (↑↓)", first + 1, last, cls.len())
    } else {
        String::new()
    };
    f.render_widget(
        Paragraph::new(Line::styled(
            format!(
                "per class, most fractured first · {}{range}",
                app.meta.models[app.model]
            ),
            DIM,
        )),
        caption,
    );
    let name_w = cls
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 16) as u16;
    let fixed = name_w + 6 + 7 + 7 + 7 + 4 + 6 + 6;
    let spark_w = table.width.saturating_sub(fixed).clamp(0, 30) as usize;
    let rows: Vec<Row> = cls
        .iter()
        .skip(app.kstar_scroll)
        .map(|c| {
            let pat_style = match c.pattern {
                Some('A') => Style::new().fg(Color::Red),
                Some('C') => Style::new().fg(Color::Green),
                _ => Style::new().fg(Color::Yellow),
            };
            Row::new(vec![
                Cell::from(c.name.clone()),
                Cell::from(c.n.to_string()),
                Cell::from(format!("{:.3}", c.mean)),
                Cell::from(format!("{:.3}", c.std)),
                Cell::from(
                    c.skew
                        .map(|s| format!("{s:+.2}"))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(c.pattern.map(String::from).unwrap_or_else(|| "-".into()))
                    .style(pat_style.bold()),
                Cell::from(
                    c.accuracy
                        .map(|a| format!("{:.0}%", 100.0 * a))
                        .unwrap_or_else(|| "-".into()),
                ),
                hist_cell(c, spark_w),
            ])
        })
        .collect();
    let split = cls.iter().any(|c| c.counts_wrong.is_some()) && spark_w >= 13;
    let hist_head = match (spark_w, split) {
        (w, true) if w >= 25 => "k*/n: right · wrong",
        (_, true) => "right · wrong",
        (w, false) if w >= 21 => "k*/n histogram (0..1)",
        (w, false) if w >= 9 => "k*/n hist",
        _ => "hist",
    };
    let head = ["class", "n", "mean", "std", "skew", "pat", "acc", hist_head]
        .iter()
        .map(|s| (s.to_string(), false))
        .collect();
    let widths = [
        Constraint::Length(name_w),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Fill(1),
    ];
    f.render_widget(header_table(head, rows, widths), table);
}

/// A class's k*/n histogram: split into the correctly classified samples
/// (accent) and the others (red) when the predictions are known and there
/// is room, else one sparkline.
fn hist_cell(c: &kview::KClass, w: usize) -> Cell<'static> {
    match (&c.counts_correct, &c.counts_wrong) {
        (Some(right), Some(wrong)) if w >= 13 => {
            let half = (w - 3) / 2;
            Cell::from(Line::from(vec![
                Span::styled(kview::sparkline(right, half), Style::new().fg(ACCENT)),
                Span::styled(" · ", DIM),
                Span::styled(kview::sparkline(wrong, half), Style::new().fg(Color::Red)),
            ]))
        }
        _ => Cell::from(kview::sparkline(&c.counts, w)).style(Style::new().fg(ACCENT)),
    }
}

/// Ten distinct class colours (matplotlib's tab10), repeated beyond ten.
const CLASS_COLORS: [Color; 10] = [
    Color::Rgb(31, 119, 180),
    Color::Rgb(255, 127, 14),
    Color::Rgb(44, 160, 44),
    Color::Rgb(214, 39, 40),
    Color::Rgb(148, 103, 189),
    Color::Rgb(140, 86, 75),
    Color::Rgb(227, 119, 194),
    Color::Rgb(127, 127, 127),
    Color::Rgb(188, 189, 34),
    Color::Rgb(23, 190, 207),
];

/// The selected model's latents in two dimensions (PCA or t-SNE, `s`), one
/// braille dot per sample coloured by class; the class selected with ↑↓ is
/// drawn last, in white, so that it stands out.
fn scatter(f: &mut Frame, app: &App, area: Rect) {
    let [caption, plot] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    let method = if app.kstar_show == KstarShow::Pca {
        "PCA"
    } else {
        "t-SNE"
    };
    let selected = app
        .kstar(app.model)
        .map(kview::classes)
        .and_then(|c| c.get(app.kstar_scroll).map(|c| (c.class, c.name.clone())));
    let key = app.embed_key(app.model);
    let Some(e) = app.embedding(app.model) else {
        let what = match key.map(|k| app.state(&k)) {
            Some(JobState::Failed(err)) => format!("{method}: error: {err}"),
            _ => format!("computing the {method} view of layer {}…", app.tap),
        };
        f.render_widget(Paragraph::new(Line::styled(what, DIM)), caption);
        return;
    };
    let name = selected
        .as_ref()
        .map_or_else(String::new, |(_, n)| format!(" · {n} in white (↑↓)"));
    f.render_widget(
        Paragraph::new(Line::styled(
            format!(
                "{method} of layer {} · {}{name} · s: next view",
                app.tap, app.meta.models[app.model]
            ),
            DIM,
        )),
        caption,
    );
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &e.points {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if x0 > x1 {
        return;
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.02).max(1e-9);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let mut by_class: std::collections::BTreeMap<u32, Vec<(f64, f64)>> = Default::default();
    for (p, &y) in e.points.iter().zip(&e.labels) {
        by_class.entry(y).or_default().push((p[0], p[1]));
    }
    let sel = selected.map(|(c, _)| c);
    let canvas = Canvas::default()
        .marker(Marker::Braille)
        .x_bounds([x0 - px, x1 + px])
        .y_bounds([y0 - py, y1 + py])
        .paint(move |ctx| {
            for (c, pts) in &by_class {
                if Some(*c) != sel {
                    ctx.draw(&Points {
                        coords: pts,
                        color: CLASS_COLORS[*c as usize % CLASS_COLORS.len()],
                    });
                }
            }
            ctx.layer();
            if let Some(pts) = sel.and_then(|c| by_class.get(&c)) {
                ctx.draw(&Points {
                    coords: pts,
                    color: Color::White,
                });
            }
        });
    f.render_widget(canvas, plot);
}
