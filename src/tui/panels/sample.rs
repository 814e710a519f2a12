//! The sample viewer: one sample of the evaluated set as pictures (the
//! terminal's graphics protocol, else half blocks),
//! original and at the current perturbation level (or, with `x`, the
//! perturbed image beside each model's explanation of it as a heat map on
//! one shared scale), and per model its prediction before and after (✓/✗
//! against the true label) and its DS.

use super::common::{model_col_width, num, panel_block, short_model_name, DIM};
use super::table;
use crate::engine::SampleImages;
use crate::figure::{heat_overlay, scale_max, Palette};
use crate::tui::app::{App, JobState, Panel};
use crate::tui::image::HalfBlock;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let (kind, level) = app.current();
    let explained = match app.explain {
        Some(m) => format!(" · {} (x)", m.title()),
        None => String::new(),
    };
    let extra = format!(
        "{}/{} · {} (n/p){explained}",
        app.sample + 1,
        app.meta.samples,
        app.label(kind, level)
    );
    let block = panel_block(app, Panel::Sample, extra);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = app.n_models() as u16;
    // with explanations, a second line per model carries their numbers
    let per_model = if app.explain.is_some() { 2 } else { 1 };
    let text_h = (per_model * n + 2).min(inner.height);
    let [imgs, caption, text] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(text_h),
    ])
    .areas(inner);
    let Some(s) = app.sample_images() else {
        let msg = match app.state(&app.sample_key()) {
            JobState::Failed(e) => format!("error: {e}"),
            _ => "loading sample…".into(),
        };
        f.render_widget(Paragraph::new(msg).style(DIM), inner);
        return;
    };
    if app.explain.is_some() {
        explained_images(f, app, s, imgs, caption);
    } else {
        side_by_side(f, app, s, imgs, caption);
    }
    sample_lines(f, app, s, text);
}

/// A picture through the terminal's graphics protocol when it has one,
/// else as half blocks. Under the help popup, half blocks: a kitty picture
/// is transmitted once, with its first draw, and the popup would erase
/// that transmission before it reached the terminal.
fn picture(f: &mut Frame, app: &App, img: HalfBlock, r: Rect) {
    match &app.graphics {
        Some(g) if !app.help => g.render(f, &img, r),
        _ => f.render_widget(img, r),
    }
}

/// The original and the perturbed image, captioned.
fn side_by_side(f: &mut Frame, app: &App, s: &SampleImages, imgs: Rect, caption: Rect) {
    let (kind, level) = app.current();
    let [a, _, b] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(imgs);
    for (pixels, r) in [(&s.original, a), (&s.perturbed, b)] {
        picture(
            f,
            app,
            HalfBlock {
                pixels,
                channels: s.channels,
                height: s.height,
                width: s.width,
                mode: app.meta.color,
            },
            r,
        );
    }
    let [ca, _, cb] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(caption);
    f.render_widget(
        Paragraph::new("original")
            .alignment(Alignment::Center)
            .style(DIM),
        ca,
    );
    f.render_widget(
        Paragraph::new(app.label(kind, level))
            .alignment(Alignment::Center)
            .style(DIM),
        cb,
    );
}

/// The perturbed image, then each model's explanation of it as a heat map
/// over it, every map on one scale (the largest value of any model's map);
/// a model whose explanation is not in yet, or failed, says so.
fn explained_images(f: &mut Frame, app: &App, s: &SampleImages, imgs: Rect, caption: Rect) {
    let (kind, level) = app.current();
    let n = app.n_models();
    let mut cols = vec![Constraint::Fill(1)];
    for _ in 0..n {
        cols.push(Constraint::Length(1));
        cols.push(Constraint::Fill(1));
    }
    let areas = Layout::horizontal(cols.clone()).split(imgs);
    let caps = Layout::horizontal(cols).split(caption);
    let img = |pixels: &[f32], channels: usize, r: Rect, f: &mut Frame| {
        picture(
            f,
            app,
            HalfBlock {
                pixels,
                channels,
                height: s.height,
                width: s.width,
                mode: app.meta.color,
            },
            r,
        );
    };
    img(&s.perturbed, s.channels, areas[0], f);
    f.render_widget(
        Paragraph::new(app.label(kind, level))
            .alignment(Alignment::Center)
            .style(DIM),
        caps[0],
    );
    let maps: Vec<Option<&crate::engine::ExplainMap>> =
        (0..n).map(|m| app.explanation(m)).collect();
    let max = scale_max(maps.iter().flatten().map(|e| e.map.as_slice()));
    for (m, e) in maps.iter().enumerate() {
        let (r, cap) = (areas[2 * m + 2], caps[2 * m + 2]);
        let name = short_model_name(&app.meta.models[m], cap.width.max(1) as usize);
        f.render_widget(
            Paragraph::new(name).alignment(Alignment::Center).style(DIM),
            cap,
        );
        match e {
            Some(e) if e.map.len() == s.height * s.width => {
                let px = heat_overlay(&e.map, max, Palette::of(e.method), &s.perturbed, s.channels);
                img(&px, 3, r, f);
            }
            _ => {
                let key = app.explain_key(m).expect("explanations are shown");
                let msg = match app.state(&key) {
                    JobState::Failed(e) => format!("cannot explain: {e}"),
                    _ => "explaining…".into(),
                };
                f.render_widget(
                    Paragraph::new(msg)
                        .wrap(ratatui::widgets::Wrap { trim: true })
                        .style(DIM),
                    r,
                );
            }
        }
    }
}

/// The true label, then per model its prediction before → after and DS;
/// with explanations shown, a line below each model: how far the
/// perturbation moved the model's explanation (||E(x) - E(P(x))|| /
/// ||E(x)||, "Δexpl") and the explanation's numbers as `eval --explain`
/// reports them: Captum's `sensitivity_max`, the share on the background
/// (colour-shift sets), deletion AUC.
fn sample_lines(f: &mut Frame, app: &App, s: &SampleImages, text: Rect) {
    let (_, level) = app.current();
    let class = |c: u32| {
        app.meta
            .class_names
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    let mut lines = vec![Line::from(vec![
        Span::raw("true label: "),
        Span::styled(class(s.label), Style::new().bold()),
    ])];
    // Full model names when "NAME  Ankle boot ✓ → Ankle boot ✓   DS 12.34"
    // fits, else the paper's short ones (the DS must not be cut off).
    let longest_class = (0..app.meta.class_names.len().max(1))
        .map(|c| class(c as u32).chars().count())
        .max()
        .unwrap_or(8);
    let rest = 2 * (longest_class + 2) + 3 + 11;
    let mut mw = model_col_width(app) as usize;
    let short = mw + rest > text.width as usize;
    if short {
        mw = app
            .meta
            .models
            .iter()
            .map(|n| short_model_name(n, 12).chars().count() + 3)
            .max()
            .unwrap_or(6);
    }
    for r in table::rows(app) {
        let label = if short {
            short_model_name(r.name, 12)
        } else {
            r.name.to_string()
        };
        let name = if r.model == app.model {
            format!("▶ {label}")
        } else {
            format!("  {label}")
        };
        let table::SamplePreds { before, after, ds } = r.sample(app.sample, level);
        let mark = |p: Option<u32>| match p {
            Some(p) if p == s.label => Span::styled(format!("{} ✓", class(p)), Color::Green),
            Some(p) => Span::styled(format!("{} ✗", class(p)), Color::Red),
            None => Span::styled("…", DIM),
        };
        lines.push(Line::from(vec![
            Span::raw(format!("{name:<mw$}")),
            mark(before),
            Span::raw(" → "),
            mark(after),
            Span::raw(match ds {
                Some(d) => format!("   DS {}", num(d as f64)),
                None => String::new(),
            }),
        ]));
        if app.explain.is_some() {
            lines.push(scores_line(app, r.model, 4));
        }
    }
    f.render_widget(Paragraph::new(lines), text);
}

/// A model's explanation numbers, indented under its line: how far the
/// perturbation moved it (`Δexpl`), then `sens_max`, `bg` (the share on
/// the background) and `del AUC` once their job is in.
fn scores_line(app: &App, model: usize, indent: usize) -> Line<'static> {
    let pad = " ".repeat(indent);
    let e = app.explanation(model);
    let mut t = match e {
        Some(e) => format!("Δexpl {} · ", num(e.moved as f64)),
        None => "Δexpl … · ".into(),
    };
    match e.and_then(|e| e.scores) {
        Some(sc) => {
            t.push_str(&format!("sens_max {}", num(sc.sensitivity_max as f64)));
            if let Some(b) = sc.background_share {
                t.push_str(&format!(" · bg {:.0}%", 100.0 * b));
            }
            t.push_str(&format!(" · del AUC {}", num(sc.deletion_auc as f64)));
        }
        None => match app.explain_scores_key(model).map(|k| app.state(&k)) {
            Some(JobState::Failed(e)) => t.push_str(&format!("no numbers: {e}")),
            _ => t.push_str("sens_max …"),
        },
    }
    Line::styled(format!("{pad}{t}"), DIM)
}
