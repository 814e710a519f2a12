//! The status line: device, throughput and sample count, then the running
//! job with a gauge of its progress (or how many are queued, or idle); a
//! message such as where an export went replaces the job for a while.

use super::common::{ACCENT, DIM};
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};
use ratatui::Frame;

pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let speed = match app.speed {
        Some(s) => format!("{s:.0} img/s"),
        None => "- img/s".into(),
    };
    let samples = match app.meta.decoding.as_ref().and_then(|p| p.decoding()) {
        Some((done, total)) if done < total => format!("decoding {done}/{total}"),
        _ => format!("{} samples", app.meta.samples),
    };
    let left = format!(" {} │ {speed} │ {samples} │ ", app.meta.device);
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
