//! The k* paper's Figure 4 (left) as a PNG: per class the distribution of
//! k*/n as a violin (its 20-bin histogram mirrored about the class's
//! column), classes sorted by skewness (most fractured first), each
//! coloured and labelled by its pattern with its skew, its mean marked.
//! Drawn for the explorer's export and for `semcon kstar --plot`.

use super::plot::{plot_err, register_font, save_png, FAMILY};
use crate::metrics::kstar::KstarReport;
use crate::tui::kview::{self, KClass};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Writes the chart of `r` to `path` (PNG) under `title`; `false` when the
/// report has no classes.
pub fn kstar_violins(r: &KstarReport, title: &str, path: &Path) -> Result<bool> {
    register_font()?;
    let mut cls: Vec<KClass> = kview::classes(r);
    if cls.is_empty() {
        return Ok(false);
    }
    // Most fractured (largest skew) first; undefined skews last.
    cls.sort_by(|a, b| {
        let key = |c: &KClass| c.skew.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then(a.class.cmp(&b.class))
    });
    let n = cls.len();
    let w = (140 + 64 * n as u32).clamp(640, 4000);
    save_png(path, (w, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(14)
            .x_label_area_size(if n <= 40 { 44 } else { 30 })
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..n as f64, 0.0..1.08)
            .map_err(plot_err)?;
        let names: Vec<String> = cls.iter().map(|c| c.name.clone()).collect();
        let label = move |v: &f64| {
            // One label at the centre of each column.
            let i = v.floor() as usize;
            if (v - (i as f64 + 0.5)).abs() < 1e-6 && n <= 40 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&label)
            .y_labels(11)
            .light_line_style(RGBColor(242, 242, 242))
            .y_desc("k*/n")
            .x_desc("classes, by skewness of k*/n (most fractured first)")
            .label_style((FAMILY, 13))
            .draw()
            .map_err(plot_err)?;
        for (i, c) in cls.iter().enumerate() {
            let col = pattern_color(c.pattern);
            let x = i as f64 + 0.5;
            let max = c.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
            let bw = (c.hi - c.lo) / c.counts.len().max(1) as f64;
            chart
                .draw_series(
                    c.counts
                        .iter()
                        .enumerate()
                        .filter(|(_, &k)| k > 0)
                        .map(|(b, &k)| {
                            let half = 0.42 * k as f64 / max;
                            let y0 = c.lo + bw * b as f64;
                            Rectangle::new([(x - half, y0), (x + half, y0 + bw)], col.filled())
                        }),
                )
                .map_err(plot_err)?;
            // The mean, and the pattern with the skew above the column.
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x - 0.3, c.mean), (x + 0.3, c.mean)],
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?;
            let tag = format!(
                "{} {}",
                c.pattern.unwrap_or('-'),
                c.skew.map_or_else(|| "-".into(), |s| format!("{s:+.1}"))
            );
            chart
                .draw_series(std::iter::once(Text::new(
                    tag,
                    (x, 1.055),
                    TextStyle::from((FAMILY, 12).into_font())
                        .color(&col)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(plot_err)?;
        }
        Ok(())
    })?;
    Ok(true)
}

/// A: red (fractured), B: orange (overlapped), C: green (clustered).
pub(super) fn pattern_color(p: Option<char>) -> RGBColor {
    match p {
        Some('A') => RGBColor(214, 39, 40),
        Some('C') => RGBColor(44, 160, 44),
        _ => RGBColor(255, 127, 14),
    }
}
