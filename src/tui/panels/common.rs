//! What the panels share: the panel border and title, styles, number
//! formats, job-state cells and the column widths of the model × level
//! tables.

use crate::perturb::Kind;
use crate::tui::app::{App, JobState, Panel};
use crate::tui::panels::table::Entry;
use ratatui::layout::Constraint;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::widgets::{Block, BorderType, Borders, Cell, Row, Table};

pub(crate) const ACCENT: Color = Color::Cyan;
pub(crate) const DIM: Style = Style::new().fg(Color::DarkGray);

/// `extra` for the title of a panel `width` columns wide: when it does not
/// fit, its start is cut (with "…") so that its end, the "so far: n/N"
/// legend of a running job, stays whole.
pub(crate) fn fit_extra(panel: Panel, extra: String, width: u16) -> String {
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

pub(crate) fn panel_block<'a>(app: &App, panel: Panel, extra: String) -> Block<'a> {
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

/// A cell for a job: its value when done, else its state.
pub(crate) fn state_cell<'a>(st: JobState<'_>, value: impl FnOnce() -> String) -> Cell<'a> {
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
pub(crate) fn accuracy_cell<'a, T>(entry: &Entry<'_, T>, acc: Option<f64>) -> Cell<'a> {
    match (entry.partial_samples(), acc) {
        (Some(_), Some(v)) => Cell::from(partial_pct(v)).style(Style::new().fg(Color::Yellow)),
        _ => state_cell(entry.state(), || pct(acc.unwrap_or(f64::NAN))),
    }
}

/// " · … so far: 320/2000" when a partial accuracy is shown: the first of
/// `partials` (the cells' [`Entry::partial_samples`]) that is `Some`.
pub(crate) fn partial_legend(
    app: &App,
    partials: impl IntoIterator<Item = Option<usize>>,
) -> String {
    partials
        .into_iter()
        .flatten()
        .next()
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

pub(crate) fn model_cell<'a>(app: &App, m: usize, cols: Cols) -> Cell<'a> {
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

pub(crate) fn model_col_width(app: &App) -> u16 {
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
pub(crate) struct Cols {
    pub(crate) model: u16,
    pub(crate) level: u16,
    pub(crate) short_names: bool,
    pub(crate) numbers: bool,
}

impl Cols {
    /// `levels` level columns beside `rest` columns of other cells (their
    /// widths plus one space each).
    pub(crate) fn fit(app: &App, avail: u16, levels: u16, rest: u16) -> Cols {
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

    pub(crate) fn level_head(&self, app: &App, kind: Kind, l: usize) -> String {
        if self.numbers {
            format!("L{l}")
        } else {
            app.short_label(kind, l)
        }
    }
}

/// A table under a bold header row (cells `(text, current)`: the current
/// level's heading highlighted), its columns one space apart.
pub(crate) fn header_table<'a>(
    head: Vec<(String, bool)>,
    rows: Vec<Row<'a>>,
    widths: impl IntoIterator<Item = Constraint>,
) -> Table<'a> {
    let head = Row::new(head.into_iter().map(|(t, cur)| {
        let c = Cell::from(t);
        if cur {
            c.style(Style::new().fg(Color::Black).bg(ACCENT).bold())
        } else {
            c.style(Style::new().bold())
        }
    }));
    Table::new(rows, widths).header(head).column_spacing(1)
}
