//! The accuracy table: per model the clean accuracy, the accuracy at every
//! level of the current perturbation (the current level bold, a running
//! job's accuracy so far marked "…") and Δ, the drop at the current level.

use super::common::{
    accuracy_cell, fit_extra, header_table, model_cell, panel_block, partial_legend, Cols,
};
use super::table::{self, Entry};
use crate::tui::app::{App, Panel};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Stylize;
use ratatui::widgets::{Cell, Row};
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let (kind, level) = app.current();
    let rows = table::rows(app);
    let partials = rows.iter().flat_map(|r| {
        std::iter::once(r.clean.partial_samples())
            .chain(r.levels.iter().map(Entry::partial_samples))
    });
    let extra = format!(
        "{} (clean → levels){}",
        kind.name(),
        partial_legend(app, partials)
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
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![model_cell(app, r.model, cols)];
            let clean = r.clean.value.map(|c| c.accuracy);
            cells.push(accuracy_cell(&r.clean, clean));
            for (l, e) in (1..).zip(&r.levels) {
                let c = accuracy_cell(e, e.value.map(|p| p.accuracy));
                cells.push(if l == level { c.bold() } else { c });
            }
            // Only between final numbers (partial ones cover different samples).
            let at = r.level(level);
            let finished = r.clean.is_final() && at.is_final();
            let delta = match (clean, at.value) {
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
    let t = header_table(head, rows, widths).block(block);
    f.render_widget(t, area);
}
