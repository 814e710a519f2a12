//! The perturbation list: every perturbation and level, with the selected
//! model's accuracy at each once computed; the selected entry highlighted
//! and kept in view.

use super::common::{fit_extra, panel_block, pct, short_model_name, ACCENT, DIM};
use crate::engine::JobKey;
use crate::tui::app::{App, JobState, Panel};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState};
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
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
            let label = list_label(app, kind, level);
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

/// The list's label of a level: its parameter, and when an earlier level of
/// the same perturbation has the same parameter on these images (channel
/// shifts of 28-pixel images: levels 1 and 2 both shift by 1 px, as SPEC.md's
/// rounding says), which level it equals, so that it does not read as a bug.
fn list_label(app: &App, kind: crate::perturb::Kind, level: usize) -> String {
    let label = app.label(kind, level);
    match (1..level).find(|&l| app.label(kind, l) == label) {
        Some(l) => format!("{label} (= L{l})"),
        None => label,
    }
}
