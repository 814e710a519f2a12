//! Pure rendering: `render(frame, &App)` draws only what is in `App.results`.
//! This is the screen's layout; the panels are drawn by [`super::panels`].
//!
//! Two layouts: wide (>= 140x32) shows every panel at once; compact (down to
//! [`MIN_WIDTH`]x[`MIN_HEIGHT`]) shows the perturbation list, the accuracy
//! table and the focused panel (DS when the list or accuracy is focused).
//! Below the minimum a message says how large the terminal must be.

use super::app::{App, Panel};
use super::keys;
use super::panels::common::DIM;
use super::panels::{accuracy, ds, header, help, kstar, perturbations, pgd, sample, status};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Stylize;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

pub use super::panels::common::{num, partial_pct, pct, progress_bar, short_model_name};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
pub const WIDE_WIDTH: u16 = 140;
pub const WIDE_HEIGHT: u16 = 32;

const LIST_WIDTH: u16 = 28;

/// Draws the whole screen.
pub fn render(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(f, area);
        return;
    }
    let [header_area, body, status_area, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(f, app, header_area);
    if area.width >= WIDE_WIDTH && area.height >= WIDE_HEIGHT {
        render_wide(f, app, body);
    } else {
        render_compact(f, app, body);
    }
    status::render(f, app, status_area);
    let keys_line = if area.width as usize >= keys::FOOTER.chars().count() {
        keys::FOOTER
    } else {
        keys::FOOTER_SHORT
    };
    f.render_widget(Paragraph::new(keys_line).style(DIM), footer);
    if app.help {
        help::render(f, area, &app.pictures);
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
    perturbations::render(f, app, left);
    let n = app.n_models() as u16;
    let [acc, ds_area, pgd_area] = Layout::vertical([
        Constraint::Length(n + 3),
        Constraint::Fill(1),
        Constraint::Length(n + 3),
    ])
    .areas(mid);
    accuracy::render(f, app, acc);
    ds::render(f, app, ds_area);
    pgd::render(f, app, pgd_area);
    let sample_h = (body.height / 2 + 3).min(body.height.saturating_sub(6));
    let [sample_area, kstar_area] =
        Layout::vertical([Constraint::Length(sample_h), Constraint::Fill(1)]).areas(right);
    sample::render(f, app, sample_area);
    kstar::render(f, app, kstar_area);
}

fn render_compact(f: &mut Frame, app: &App, body: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Fill(1)]).areas(body);
    perturbations::render(f, app, left);
    let n = app.n_models() as u16;
    let [acc, rest] =
        Layout::vertical([Constraint::Length(n + 3), Constraint::Fill(1)]).areas(right);
    accuracy::render(f, app, acc);
    match app.focus {
        Panel::Perturbations | Panel::Accuracy | Panel::Ds => ds::render(f, app, rest),
        Panel::Pgd => pgd::render(f, app, rest),
        Panel::Kstar => kstar::render(f, app, rest),
        Panel::Sample => sample::render(f, app, rest),
    }
}
