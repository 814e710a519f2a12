//! The help overlay (`?`): the keys and what they do, in a box centred over
//! the screen.

use super::common::{ACCENT, DIM};
use crate::tui::keys;
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};
use ratatui::Frame;

/// Draws over `area`, the whole screen; `pictures` says how the sample
/// panel draws images (it shows no other state, so it takes no
/// [`App`](crate::tui::app::App)).
pub fn render(f: &mut Frame, area: Rect, pictures: &str) {
    let w = 78.min(area.width);
    let h = (keys::KEYS.len() as u16 + 9).min(area.height);
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
    lines.push(Line::from(format!(" Pictures: {pictures}.")));
    lines.push(Line::styled(
        " SEMCON_GRAPHICS=auto|kitty|sixel|iterm2|halfblocks chooses them.",
        DIM,
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
