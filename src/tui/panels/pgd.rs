//! The PGD table: per model the clean accuracy and the accuracy under PGD at
//! each configured ε (the title gives the steps and their size).

use super::common::{
    accuracy_cell, fit_extra, header_table, model_cell, panel_block, partial_legend, pct,
    state_cell, Cols,
};
use super::table;
use crate::tui::app::{eps_label, App, Panel};
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let extra = match app.meta.pgd.first() {
        Some(p) => format!("{} steps of {}", p.iters, eps_label(p.step)),
        None => "no eps configured".into(),
    };
    let rows = table::rows(app);
    let partials = rows.iter().map(|r| r.clean.partial_samples());
    let extra = format!("{extra}{}", partial_legend(app, partials));
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
    let rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![model_cell(app, r.model, cols)];
            cells.push(accuracy_cell(&r.clean, r.clean.value.map(|c| c.accuracy)));
            for e in &r.pgd {
                let v = e.value.map(|p| p.accuracy);
                cells.push(state_cell(e.state(), || pct(v.unwrap_or(f64::NAN))));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(cols.model), Constraint::Length(6)];
    widths.extend(app.meta.pgd.iter().map(|_| Constraint::Length(9)));
    f.render_widget(header_table(head, rows, widths).block(block), area);
}
