//! The DS panel: per model the mean DS at every level of the current
//! perturbation, the median, the discontinuity rate and a histogram
//! sparkline at the current level; below, the selected model's DS histogram
//! at the current level.

use super::common::{
    header_table, model_cell, num, panel_block, pct, short_model_name, state_cell, Cols, ACCENT,
    DIM,
};
use super::table::{self, ModelRow};
use crate::tui::app::{App, Panel};
use crate::tui::kview;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::widgets::{Bar, BarChart, BarGroup, Cell, Paragraph, Row};
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
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
    let model_rows = table::rows(app);
    let rows: Vec<Row> = model_rows
        .iter()
        .map(|r| {
            let mut cells = vec![model_cell(app, r.model, cols)];
            for (l, e) in (1..).zip(&r.levels) {
                let v = e.value.map(|p| p.ds_mean);
                let c = state_cell(e.state(), || num(v.unwrap_or(f64::NAN)));
                cells.push(if l == level { c.bold() } else { c });
            }
            // Final rows only: the histogram below shows a running job's DS so far.
            match r.level(level).final_value() {
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
    f.render_widget(header_table(head, rows, widths), top);
    // The histogram of the selected model at the current level.
    if bottom.height >= 4 {
        histogram(f, app, &model_rows[app.model], bottom);
    }
}

/// `row`'s DS histogram at the current level, with a title line and the
/// range of its bins below.
fn histogram(f: &mut Frame, app: &App, row: &ModelRow, area: Rect) {
    let (kind, level) = app.current();
    let name = row.name;
    let at = row.level(level);
    let Some(r) = at.value else {
        let msg = format!(
            "DS histogram of {name} at {}: waiting",
            app.label(kind, level)
        );
        f.render_widget(Paragraph::new(msg).style(DIM), area);
        return;
    };
    // Equal-width bins (numpy's) or, with `b`, log-spaced ones for heavy tails.
    let (counts, lo, hi, bins_note) = if app.ds_log_bins {
        let h = &r.ds_histogram_log;
        let lo = h.edges.first().copied().unwrap_or(0.0);
        let hi = h.edges.last().copied().unwrap_or(0.0);
        let note = match h.nonpositive {
            0 => " · log bins".to_string(),
            z => format!(" · log bins ({z} at 0)"),
        };
        (&h.counts, lo, hi, note)
    } else {
        let h = &r.ds_histogram;
        (&h.counts, h.lo, h.hi, String::new())
    };
    let [title, chart, axis] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let n = counts.iter().sum::<u64>();
    // A running job's histogram says so first (a long line is cut at the end).
    let text = if at.is_final() {
        let full = format!(
            "DS histogram · {} · {name} · mean {} · n {n}{bins_note}",
            app.label(kind, level),
            num(r.ds_mean),
        );
        if full.chars().count() <= title.width as usize {
            full
        } else {
            format!(
                "DS histogram · {} · {} · mean {} · n {n}{}",
                app.short_label(kind, level),
                short_model_name(name, 8),
                num(r.ds_mean),
                if app.ds_log_bins { " · log" } else { "" },
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
    let bins = counts.len().max(1) as u16;
    let bw = (chart.width / bins).max(1);
    let bars: Vec<Bar> = counts
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
    let lo = num(lo);
    let hi = num(hi);
    let span = (bw * bins) as usize;
    let gap = span.saturating_sub(lo.len() + hi.len()).max(1);
    f.render_widget(
        Paragraph::new(format!("{lo}{}{hi}", " ".repeat(gap))).style(DIM),
        axis,
    );
}
