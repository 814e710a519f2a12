//! The header line: the program's name, the demo badge, the dataset, the
//! sample count and the model (or the models compared).

use super::common::{short_model_name, ACCENT};
use crate::tui::app::App;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
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
