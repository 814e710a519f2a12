//! Pure rendering: `render(frame, &App)` draws only what is in `App.results`.
//!
//! Two layouts: wide (>= 140x32) shows every panel at once; compact (down to
//! [`MIN_WIDTH`]x[`MIN_HEIGHT`]) shows the perturbation list, the accuracy
//! table and the focused panel (DS when the list or accuracy is focused).
//! Below the minimum a message says how large the terminal must be.

use super::app::{eps_label, metric_name, App, JobState, Panel};
use super::image::HalfBlock;
use super::keys;
use super::kview;
use crate::engine::JobKey;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, BorderType, Borders, Cell, Clear, LineGauge, List, ListItem,
    ListState, Paragraph, Row, Table, Wrap,
};
use ratatui::Frame;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
pub const WIDE_WIDTH: u16 = 140;
pub const WIDE_HEIGHT: u16 = 32;

const LIST_WIDTH: u16 = 28;
const ACCENT: Color = Color::Cyan;
const DIM: Style = Style::new().fg(Color::DarkGray);

/// Draws the whole screen.
pub fn render(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(f, area);
        return;
    }
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(f, app, header);
    if area.width >= WIDE_WIDTH && area.height >= WIDE_HEIGHT {
        render_wide(f, app, body);
    } else {
        render_compact(f, app, body);
    }
    render_status(f, app, status);
    let keys_line = if area.width as usize >= keys::FOOTER.chars().count() {
        keys::FOOTER
    } else {
        keys::FOOTER_SHORT
    };
    f.render_widget(Paragraph::new(keys_line).style(DIM), footer);
    if app.help {
        render_help(f, area);
    }
}

fn render_too_small(f: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("Terminal too small".bold()),
        Line::from(format!(
            "{}x{} — semcon needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from("enlarge the window, or press q to quit"),
    ];
    let h = (text.len() as u16).min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    let r = Rect::new(area.x, y, area.width, h);
    f.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        r,
    );
}

fn render_wide(f: &mut Frame, app: &App, body: Rect) {
    let [left, mid, right] = Layout::horizontal([
        Constraint::Length(LIST_WIDTH),
        Constraint::Fill(1),
        Constraint::Length(64.max(body.width.saturating_sub(LIST_WIDTH) * 9 / 20)),
    ])
    .areas(body);
    render_perturbations(f, app, left);
    let n = app.n_models() as u16;
    let [acc, ds, pgd] = Layout::vertical([
        Constraint::Length(n + 3),
        Constraint::Fill(1),
        Constraint::Length(n + 3),
    ])
    .areas(mid);
    render_accuracy(f, app, acc);
    render_ds(f, app, ds);
    render_pgd(f, app, pgd);
    let sample_h = (body.height / 2 + 3).min(body.height.saturating_sub(6));
    let [sample, kstar] =
        Layout::vertical([Constraint::Length(sample_h), Constraint::Fill(1)]).areas(right);
    render_sample(f, app, sample);
    render_kstar(f, app, kstar);
}

fn render_compact(f: &mut Frame, app: &App, body: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Fill(1)]).areas(body);
    render_perturbations(f, app, left);
    let n = app.n_models() as u16;
    let [acc, rest] =
        Layout::vertical([Constraint::Length(n + 3), Constraint::Fill(1)]).areas(right);
    render_accuracy(f, app, acc);
    match app.focus {
        Panel::Perturbations | Panel::Accuracy | Panel::Ds => render_ds(f, app, rest),
        Panel::Pgd => render_pgd(f, app, rest),
        Panel::Kstar => render_kstar(f, app, rest),
        Panel::Sample => render_sample(f, app, rest),
    }
}

/// `extra` for the title of a panel `width` columns wide: when it does not
/// fit, its start is cut (with "…") so that its end, the "so far: n/N"
/// legend of a running job, stays whole.
fn fit_extra(panel: Panel, extra: String, width: u16) -> String {
    let room = (width as usize).saturating_sub(panel.title().chars().count() + 7);
    let n = extra.chars().count();
    if n <= room {
        extra
    } else if room < 2 {
        String::new()
    } else {
        let keep: String = extra.chars().skip(n - (room - 1)).collect();
        format!("…{keep}")
    }
}

fn panel_block<'a>(app: &App, panel: Panel, extra: String) -> Block<'a> {
    let focused = app.focus == panel;
    let mut title = format!(" {} ", panel.title());
    if !extra.is_empty() {
        title = format!(" {} · {extra} ", panel.title());
    }
    let b = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        });
    if focused {
        b.border_style(Style::new().fg(ACCENT))
            .title_style(Style::new().fg(ACCENT).add_modifier(Modifier::BOLD))
    } else {
        b.border_style(DIM)
    }
}

fn render_header(f: &mut Frame, app: &App, area: Rect) {
    let m = &app.meta;
    let mut spans = vec![Span::styled(
        " semcon ",
        Style::new().fg(Color::Black).bg(ACCENT).bold(),
    )];
    // The demo badge right after the name, where a long title cannot cut it.
    if let Some(d) = &app.demo {
        spans.push(Span::styled(
            if d.paused {
                " DEMO paused "
            } else {
                " DEMO ▶ "
            },
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    spans.push(Span::raw(format!(
        " {} · {} samples · {} ",
        m.dataset,
        m.samples,
        if app.compare() {
            let full = m.models.join(" | ");
            // The paper's short names when the full ones do not fit.
            let head = format!(" {} · {} samples · comparing ", m.dataset, m.samples);
            if used + head.chars().count() + full.chars().count() < area.width as usize {
                format!("comparing {full}")
            } else {
                let short: Vec<String> = m.models.iter().map(|n| short_model_name(n, 12)).collect();
                short.join(" | ")
            }
        } else {
            format!("model {}", m.models.join(""))
        }
    )));
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A cell for a job: its value when done, else its state.
fn state_cell<'a>(st: JobState<'_>, value: impl FnOnce() -> String) -> Cell<'a> {
    match st {
        JobState::Done(_) => Cell::from(value()),
        // A bar, not a number: it must not read as an accuracy.
        JobState::Running { done, total } => {
            Cell::from(progress_bar(done, total)).style(Style::new().fg(Color::Yellow))
        }
        JobState::Queued => Cell::from("·").style(DIM),
        JobState::Failed(_) => Cell::from("error").style(Style::new().fg(Color::Red)),
        JobState::Idle => Cell::from(""),
    }
}

/// A job's progress in 5 cells ("██░░░" at 40%); the status line has the
/// exact count.
pub fn progress_bar(done: usize, total: usize) -> String {
    let full = (done * 5).checked_div(total).unwrap_or(0).min(5);
    format!("{}{}", "█".repeat(full), "░".repeat(5 - full))
}

/// A fraction as a percentage with one decimal, rounded half away from zero
/// (as the Δ column computes, so that the columns add up).
pub fn pct(v: f64) -> String {
    format!("{:.1}%", (v * 1000.0).round() / 10.0)
}

/// An accuracy over the samples done so far: "91.2%…" (at most 6 columns,
/// "100%…" for 100 %, so that the mark is never cut off).
pub fn partial_pct(v: f64) -> String {
    if v * 100.0 >= 99.95 {
        "100%…".into()
    } else {
        format!("{:.1}%…", v * 100.0)
    }
}

/// An accuracy cell: the value when done; while the job runs and has
/// streamed a result, the accuracy so far marked "…" (the panel title says
/// over how many samples); else the job's state.
fn accuracy_cell<'a>(app: &App, key: JobKey, acc: Option<f64>) -> Cell<'a> {
    match (app.partial_samples(&key), acc) {
        (Some(_), Some(v)) => Cell::from(partial_pct(v)).style(Style::new().fg(Color::Yellow)),
        _ => state_cell(app.state(&key), || pct(acc.unwrap_or(f64::NAN))),
    }
}

/// " · … so far: 320/2000" when a partial accuracy is shown for one of `keys`.
fn partial_legend(app: &App, keys: impl IntoIterator<Item = JobKey>) -> String {
    keys.into_iter()
        .find_map(|k| app.partial_samples(&k))
        .map(|n| format!(" · … so far: {n}/{}", app.meta.samples))
        .unwrap_or_default()
}

/// A DS value with about 3 significant digits.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// The paper's short name of a shipped variant (std, C, Adv, AdvC), else
/// the name cut to `width` characters with "…".
pub fn short_model_name(name: &str, width: usize) -> String {
    let short = match name {
        "standard" => "std",
        "continuity" => "C",
        "adv" => "Adv",
        "adv-continuity" => "AdvC",
        other => other,
    };
    if short.chars().count() <= width.max(1) {
        short.to_string()
    } else {
        let cut: String = short.chars().take(width.max(2) - 1).collect();
        format!("{cut}…")
    }
}

fn model_cell<'a>(app: &App, m: usize, cols: Cols) -> Cell<'a> {
    let full = &app.meta.models[m];
    let name = if cols.short_names {
        short_model_name(full, cols.model.saturating_sub(2) as usize)
    } else {
        full.clone()
    };
    if m == app.model {
        Cell::from(format!("▶ {name}")).style(Style::new().bold())
    } else {
        Cell::from(format!("  {name}"))
    }
}

/// Width of a per-level column: the numbers (6) or the parameter labels.
fn level_col_width(app: &App) -> u16 {
    let kind = app.kind();
    (1..=kind.levels())
        .map(|l| app.short_label(kind, l).chars().count() as u16)
        .max()
        .unwrap_or(6)
        .clamp(6, 9)
}

fn model_col_width(app: &App) -> u16 {
    app.meta
        .models
        .iter()
        .map(|n| n.chars().count() as u16 + 3)
        .max()
        .unwrap_or(8)
        .clamp(8, 22)
}

/// Column widths of a model × level table in `avail` columns: full model
/// names and parameter labels when they fit; else level numbers (L1..L4: the
/// perturbation list gives their parameters); else also the paper's short
/// model names (std, C, Adv, AdvC), so that no column is cut mid-word.
#[derive(Clone, Copy, Debug)]
struct Cols {
    model: u16,
    level: u16,
    short_names: bool,
    numbers: bool,
}

impl Cols {
    /// `levels` level columns beside `rest` columns of other cells (their
    /// widths plus one space each).
    fn fit(app: &App, avail: u16, levels: u16, rest: u16) -> Cols {
        let full = Cols {
            model: model_col_width(app),
            level: level_col_width(app),
            short_names: false,
            numbers: false,
        };
        let need = |c: &Cols| c.model + levels * (c.level + 1) + rest;
        if need(&full) <= avail {
            return full;
        }
        let numbered = Cols {
            level: 6,
            numbers: true,
            ..full
        };
        if need(&numbered) <= avail {
            return numbered;
        }
        let short = app
            .meta
            .models
            .iter()
            .map(|n| short_model_name(n, 20).chars().count() as u16 + 3)
            .max()
            .unwrap_or(6)
            .clamp(6, 22);
        Cols {
            model: short.min(full.model),
            short_names: true,
            ..numbered
        }
    }

    fn level_head(&self, app: &App, kind: crate::perturb::Kind, l: usize) -> String {
        if self.numbers {
            format!("L{l}")
        } else {
            app.short_label(kind, l)
        }
    }
}

fn header_row<'a>(cells: Vec<(String, bool)>) -> Row<'a> {
    Row::new(cells.into_iter().map(|(t, cur)| {
        let c = Cell::from(t);
        if cur {
            c.style(Style::new().fg(Color::Black).bg(ACCENT).bold())
        } else {
            c.style(Style::new().bold())
        }
    }))
}

fn render_perturbations(f: &mut Frame, app: &App, area: Rect) {
    // The accuracies listed are the selected model's: say whose.
    let whose = match app.meta.models.get(app.model) {
        Some(name) if app.n_models() > 1 => {
            let room = (area.width as usize).saturating_sub(Panel::Perturbations.title().len() + 7);
            format!("acc {}", short_model_name(name, room.saturating_sub(4)))
        }
        _ => String::new(),
    };
    let block = panel_block(
        app,
        Panel::Perturbations,
        fit_extra(Panel::Perturbations, whose, area.width),
    );
    let inner_h = area.height.saturating_sub(2) as usize;
    let items: Vec<ListItem> = app
        .items
        .iter()
        .enumerate()
        .map(|(i, &(kind, level))| {
            let key = JobKey::Perturb {
                model: app.model,
                kind,
                level,
            };
            let right = match app.state(&key) {
                JobState::Done(_) => app
                    .perturb(app.model, kind, level)
                    .map(|r| pct(r.accuracy))
                    .unwrap_or_default(),
                JobState::Running { .. } => "…".into(),
                JobState::Failed(_) => "err".into(),
                _ => String::new(),
            };
            let label = app.label(kind, level);
            let w = area.width.saturating_sub(4) as usize;
            let pad = w.saturating_sub(label.chars().count() + right.chars().count());
            // Alternate shades per perturbation so the groups stand apart.
            let kind_idx = app.items[..=i].iter().filter(|(_, l)| *l == 1).count();
            let style = if kind_idx % 2 == 0 {
                Style::new().fg(Color::Gray)
            } else {
                Style::new()
            };
            ListItem::new(Line::from(vec![
                Span::raw(label),
                Span::raw(" ".repeat(pad.max(1))),
                Span::styled(right, DIM),
            ]))
            .style(style)
        })
        .collect();
    let offset = app
        .item
        .saturating_sub(inner_h / 2)
        .min(app.items.len().saturating_sub(inner_h));
    let mut state = ListState::default()
        .with_selected(Some(app.item))
        .with_offset(offset);
    let list = List::new(items)
        .block(block)
        .highlight_symbol("▶ ")
        .highlight_style(Style::new().fg(Color::Black).bg(ACCENT).bold());
    f.render_stateful_widget(list, area, &mut state);
}

fn render_accuracy(f: &mut Frame, app: &App, area: Rect) {
    let (kind, level) = app.current();
    let keys = (0..app.n_models()).flat_map(|m| {
        std::iter::once(JobKey::Clean { model: m }).chain((1..=kind.levels()).map(move |level| {
            JobKey::Perturb {
                model: m,
                kind,
                level,
            }
        }))
    });
    let extra = format!(
        "{} (clean → levels){}",
        kind.name(),
        partial_legend(app, keys)
    );
    let block = panel_block(
        app,
        Panel::Accuracy,
        fit_extra(Panel::Accuracy, extra, area.width),
    );
    let lv = kind.levels() as u16;
    let cols = Cols::fit(app, block.inner(area).width, lv, 7 + 7 + 1);
    let mut head = vec![("model".to_string(), false), ("clean".to_string(), false)];
    for l in 1..=kind.levels() {
        head.push((cols.level_head(app, kind, l), l == level));
    }
    head.push(("Δ".to_string(), false));
    let rows: Vec<Row> = (0..app.n_models())
        .map(|m| {
            let mut cells = vec![model_cell(app, m, cols)];
            let clean_key = JobKey::Clean { model: m };
            let clean = app.clean(m).map(|c| c.accuracy);
            cells.push(accuracy_cell(app, clean_key, clean));
            for l in 1..=kind.levels() {
                let key = JobKey::Perturb {
                    model: m,
                    kind,
                    level: l,
                };
                let v = app.perturb(m, kind, l).map(|r| r.accuracy);
                let c = accuracy_cell(app, key, v);
                cells.push(if l == level { c.bold() } else { c });
            }
            // Only between final numbers (partial ones cover different samples).
            let key = JobKey::Perturb {
                model: m,
                kind,
                level,
            };
            let finished = app.is_final(&clean_key) && app.is_final(&key);
            let delta = match (clean, app.perturb(m, kind, level)) {
                (Some(c), Some(p)) if finished => {
                    // The difference of the two shown (rounded) numbers, so the
                    // columns add up; no "-0.0".
                    let d = ((p.accuracy * 1000.0).round() - (c * 1000.0).round()) / 10.0;
                    if d == 0.0 {
                        "0.0".to_string()
                    } else {
                        format!("{d:+.1}")
                    }
                }
                _ => String::new(),
            };
            cells.push(Cell::from(delta));
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(cols.model), Constraint::Length(6)];
    let lw = cols.level;
    for _ in 1..=kind.levels() {
        widths.push(Constraint::Length(lw));
    }
    widths.push(Constraint::Length(lw.max(6)));
    widths.push(Constraint::Fill(1));
    let t = Table::new(rows, widths)
        .header(header_row(head))
        .block(block)
        .column_spacing(1);
    f.render_widget(t, area);
}

fn render_ds(f: &mut Frame, app: &App, area: Rect) {
    let (kind, level) = app.current();
    let block = panel_block(app, Panel::Ds, format!("{} · mean per level", kind.name()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = app.n_models() as u16;
    let table_h = (n + 1).min(inner.height);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(table_h + 1), Constraint::Fill(1)]).areas(inner);
    let lv = kind.levels() as u16;
    let cols = Cols::fit(app, inner.width, lv, 7 + 8 + 1);
    let fixed = cols.model + cols.level * lv + 6 + 7 + (lv + 4);
    let spark_w = inner.width.saturating_sub(fixed).clamp(0, 40) as usize;
    let mut head = vec![("model".to_string(), false)];
    for l in 1..=kind.levels() {
        head.push((cols.level_head(app, kind, l), l == level));
    }
    head.push(("median".into(), false));
    head.push(("discont".into(), false));
    if spark_w >= 8 {
        head.push((
            format!("histogram @{}", cols.level_head(app, kind, level)),
            false,
        ));
    }
    let rows: Vec<Row> = (0..app.n_models())
        .map(|m| {
            let mut cells = vec![model_cell(app, m, cols)];
            for l in 1..=kind.levels() {
                let key = JobKey::Perturb {
                    model: m,
                    kind,
                    level: l,
                };
                let v = app.perturb(m, kind, l).map(|r| r.ds_mean);
                let c = state_cell(app.state(&key), || num(v.unwrap_or(f64::NAN)));
                cells.push(if l == level { c.bold() } else { c });
            }
            let key = JobKey::Perturb {
                model: m,
                kind,
                level,
            };
            // Final rows only: the histogram below shows a running job's DS so far.
            match app.perturb(m, kind, level).filter(|_| app.is_final(&key)) {
                Some(r) => {
                    cells.push(Cell::from(num(r.ds_median)));
                    cells.push(Cell::from(pct(r.discontinuity_rate)));
                    if spark_w >= 8 {
                        cells.push(
                            Cell::from(kview::sparkline(&r.ds_histogram.counts, spark_w))
                                .style(Style::new().fg(ACCENT)),
                        );
                    }
                }
                None => cells.extend([Cell::from(""), Cell::from(""), Cell::from("")]),
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(cols.model)];
    for _ in 1..=kind.levels() {
        widths.push(Constraint::Length(cols.level));
    }
    widths.extend([
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Fill(1),
    ]);
    f.render_widget(
        Table::new(rows, widths)
            .header(header_row(head))
            .column_spacing(1),
        top,
    );
    // The histogram of the selected model at the current level.
    if bottom.height < 4 {
        return;
    }
    let name = &app.meta.models[app.model];
    let Some(r) = app.perturb(app.model, kind, level) else {
        let msg = format!(
            "DS histogram of {name} at {}: waiting",
            app.label(kind, level)
        );
        f.render_widget(Paragraph::new(msg).style(DIM), bottom);
        return;
    };
    let h = &r.ds_histogram;
    let [title, chart, axis] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(bottom);
    let key = JobKey::Perturb {
        model: app.model,
        kind,
        level,
    };
    let n = h.counts.iter().sum::<u64>();
    // A running job's histogram says so first (a long line is cut at the end).
    let text = if app.is_final(&key) {
        let full = format!(
            "DS histogram · {} · {name} · mean {} · n {n}",
            app.label(kind, level),
            num(r.ds_mean),
        );
        if full.chars().count() <= title.width as usize {
            full
        } else {
            format!(
                "DS histogram · {} · {} · mean {} · n {n}",
                app.short_label(kind, level),
                short_model_name(name, 8),
                num(r.ds_mean),
            )
        }
    } else {
        format!(
            "DS histogram · so far {n}/{} · {} · {name} · mean {}",
            app.meta.samples,
            app.label(kind, level),
            num(r.ds_mean),
        )
    };
    f.render_widget(Paragraph::new(text), title);
    let bins = h.counts.len().max(1) as u16;
    let bw = (chart.width / bins).max(1);
    let bars: Vec<Bar> = h
        .counts
        .iter()
        .map(|&c| Bar::default().value(c).text_value(String::new()))
        .collect();
    f.render_widget(
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(bw)
            .bar_gap(0)
            .bar_style(Style::new().fg(ACCENT)),
        chart,
    );
    let lo = num(h.lo);
    let hi = num(h.hi);
    let span = (bw * bins) as usize;
    let gap = span.saturating_sub(lo.len() + hi.len()).max(1);
    f.render_widget(
        Paragraph::new(format!("{lo}{}{hi}", " ".repeat(gap))).style(DIM),
        axis,
    );
}

fn render_pgd(f: &mut Frame, app: &App, area: Rect) {
    let extra = match app.meta.pgd.first() {
        Some(p) => format!("{} steps of {}", p.iters, eps_label(p.step)),
        None => "no eps configured".into(),
    };
    let clean_keys = (0..app.n_models()).map(|m| JobKey::Clean { model: m });
    let extra = format!("{extra}{}", partial_legend(app, clean_keys));
    let block = panel_block(app, Panel::Pgd, fit_extra(Panel::Pgd, extra, area.width));
    let cols = Cols::fit(
        app,
        block.inner(area).width,
        0,
        7 + 10 * app.meta.pgd.len() as u16 + 1,
    );
    let mut head = vec![("model".to_string(), false), ("clean".to_string(), false)];
    for p in &app.meta.pgd {
        head.push((format!("ε {}", eps_label(p.eps)), false));
    }
    let rows: Vec<Row> = (0..app.n_models())
        .map(|m| {
            let mut cells = vec![model_cell(app, m, cols)];
            let clean = app.clean(m).map(|c| c.accuracy);
            cells.push(accuracy_cell(app, JobKey::Clean { model: m }, clean));
            for e in 0..app.meta.pgd.len() {
                let v = app.pgd(m, e).map(|r| r.accuracy);
                cells.push(state_cell(
                    app.state(&JobKey::Pgd {
                        model: m,
                        eps_index: e,
                    }),
                    || pct(v.unwrap_or(f64::NAN)),
                ));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(cols.model), Constraint::Length(6)];
    widths.extend(app.meta.pgd.iter().map(|_| Constraint::Length(9)));
    f.render_widget(
        Table::new(rows, widths)
            .header(header_row(head))
            .block(block)
            .column_spacing(1),
        area,
    );
}

fn render_kstar(f: &mut Frame, app: &App, area: Rect) {
    let extra = format!("layer {} · {} (t/d)", app.tap, metric_name(app.metric));
    let block = panel_block(app, Panel::Kstar, extra);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = app.n_models() as u16;
    let [summary, table] =
        Layout::vertical([Constraint::Length(n + 1), Constraint::Fill(1)]).areas(inner);
    // Pattern counts per model.
    let mw = model_col_width(app) as usize;
    let mut lines = vec![Line::from(vec![Span::styled(
        format!("{:<mw$}A frac. B overl. C clust.  mean k*", "model"),
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
                let g = kview::groups(r);
                format!(
                    "{:>7} {:>8} {:>8}  {}",
                    g[0].count,
                    g[1].count,
                    g[2].count,
                    kview::overall_mean(r)
                        .map(|v| format!("{v:.3}"))
                        .unwrap_or_else(|| "-".into())
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
            format!("per class · {}{range}", app.meta.models[app.model]),
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
    let fixed = name_w + 6 + 7 + 7 + 7 + 4 + 6;
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
                Cell::from(kview::sparkline(&c.counts, spark_w)).style(Style::new().fg(ACCENT)),
            ])
        })
        .collect();
    let hist_head = match spark_w {
        w if w >= 21 => "k*/n histogram (0..1)",
        w if w >= 9 => "k*/n hist",
        _ => "hist",
    };
    let head = ["class", "n", "mean", "std", "skew", "pat", hist_head]
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
        Constraint::Fill(1),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header_row(head))
            .column_spacing(1),
        table,
    );
}

fn render_sample(f: &mut Frame, app: &App, area: Rect) {
    let (kind, level) = app.current();
    let extra = format!(
        "{}/{} · {} (n/p)",
        app.sample + 1,
        app.meta.samples,
        app.label(kind, level)
    );
    let block = panel_block(app, Panel::Sample, extra);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = app.n_models() as u16;
    let text_h = (n + 2).min(inner.height);
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
    let [a, _, b] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Fill(1),
    ])
    .areas(imgs);
    for (pixels, r) in [(&s.original, a), (&s.perturbed, b)] {
        f.render_widget(
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
    for m in 0..app.n_models() {
        let label = if short {
            short_model_name(&app.meta.models[m], 12)
        } else {
            app.meta.models[m].clone()
        };
        let name = if m == app.model {
            format!("▶ {label}")
        } else {
            format!("  {label}")
        };
        let before = app.clean(m).and_then(|c| c.preds.get(app.sample).copied());
        let row = app.perturb(m, kind, level);
        let after = row.and_then(|r| r.preds.get(app.sample).copied());
        let ds = row.and_then(|r| r.ds.get(app.sample).copied());
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
    }
    f.render_widget(Paragraph::new(lines), text);
}

fn render_status(f: &mut Frame, app: &App, area: Rect) {
    let speed = match app.speed {
        Some(s) => format!("{s:.0} img/s"),
        None => "- img/s".into(),
    };
    let left = format!(
        " {} │ {speed} │ {} samples │ ",
        app.meta.device, app.meta.samples
    );
    let (job, gauge) = if app.engine_stopped {
        ("engine stopped".to_string(), None)
    } else if let Some(p) = app.running() {
        (
            format!("computing {}", app.describe(&p.key)),
            Some((p.done, p.total)),
        )
    } else if app.pending() > 0 {
        (format!("{} jobs queued", app.pending()), None)
    } else {
        (format!("idle · {} results cached", app.results.len()), None)
    };
    // A message (e.g. where an export went) replaces the job and the gauge.
    let gauge = gauge.filter(|_| app.message.is_none());
    // The job's words before the gauge: it gets what they leave (at most 28
    // columns); when under 12 are left, the count follows the words instead.
    // Narrow: the sample count goes (the header has it).
    let left = if (left.chars().count() + job.chars().count() + 12) as u16 > area.width {
        format!(" {} │ {speed} │ ", app.meta.device)
    } else {
        left
    };
    let used = (left.chars().count() + job.chars().count()) as u16;
    let room = area.width.saturating_sub(used + 1);
    let gauge_w = if gauge.is_some() && room >= 12 {
        room.min(28)
    } else {
        0
    };
    let job = match gauge {
        Some((done, total)) if gauge_w == 0 => format!("{job} {done}/{total}"),
        _ => job,
    };
    // A message keeps only the device beside it (where an export went must
    // show at 80 columns).
    let spans = match &app.message {
        Some((m, _)) => vec![
            Span::styled(format!(" {} │ ", app.meta.device), DIM),
            Span::styled(m.clone(), Style::new().fg(Color::Yellow)),
        ],
        None => vec![Span::styled(left, DIM), Span::raw(job)],
    };
    let gauge = gauge.filter(|_| gauge_w > 0);
    let [text, _, g] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(gauge_w),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(Line::from(spans)), text);
    if let Some((done, total)) = gauge {
        let ratio = if total == 0 {
            0.0
        } else {
            (done as f64 / total as f64).clamp(0.0, 1.0)
        };
        f.render_widget(
            LineGauge::default()
                .ratio(ratio)
                .label(format!("{done}/{total}"))
                .filled_style(Style::new().fg(ACCENT))
                .unfilled_style(DIM),
            g,
        );
    }
}

fn render_help(f: &mut Frame, area: Rect) {
    let w = 78.min(area.width);
    let h = (keys::KEYS.len() as u16 + 7).min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    let mut lines: Vec<Line> = keys::KEYS
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!(" {k:<16}"), Style::new().fg(ACCENT).bold()),
                Span::raw(*d),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(
        " Panels: perturbations · accuracy · DS · PGD · k* · sample (Tab).",
    ));
    lines.push(Line::from(
        " Numbers fill in as the background worker finishes them.",
    ));
    lines.push(Line::styled(" Any key closes this help.", DIM));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(BorderType::Double)
                .border_style(Style::new().fg(ACCENT))
                .title(" Help — keys "),
        ),
        r,
    );
}
