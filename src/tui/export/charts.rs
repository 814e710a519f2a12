//! The line charts of the current view: accuracy per level, mean DS per
//! level beside the DS histograms at the current level, and accuracy under
//! PGD per ε; one line per model, from the final numbers of [`table`].

use super::plot::{count_label, plot_err, save_png, FAMILY};
use crate::eval::PerturbRow;
use crate::metrics::Histogram;
use crate::tui::app::App;
use crate::tui::panels::common::num;
use crate::tui::panels::table::{self, ModelRow};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// A model's line: its name and its points.
type Series = (String, Vec<(f64, f64)>);

/// One line per model, of the points `pts` takes from its row.
fn series(rows: &[ModelRow], pts: impl Fn(&ModelRow) -> Vec<(f64, f64)>) -> Vec<Series> {
    rows.iter().map(|r| (r.name.to_string(), pts(r))).collect()
}

/// The clean accuracy (%) at x = 0, once final.
fn clean_point(r: &ModelRow) -> Option<(f64, f64)> {
    r.clean.final_value().map(|c| (0.0, c.accuracy * 100.0))
}

/// `value` at each level of the current perturbation whose result is final,
/// at x = the level.
fn level_points<'r>(
    r: &'r ModelRow,
    value: impl Fn(&PerturbRow) -> f64 + 'r,
) -> impl Iterator<Item = (f64, f64)> + 'r {
    (1..)
        .zip(&r.levels)
        .filter_map(move |(l, e)| e.final_value().map(|p| (f64::from(l), value(p))))
}

/// A level axis' label: `labels[i]` at whole numbers `i` from `first` on,
/// else none.
fn level_tick(labels: &[String], first: f64) -> impl Fn(&f64) -> String + '_ {
    move |x| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= first && (i as usize) < labels.len() {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    }
}

pub(super) fn accuracy_chart(app: &App, path: &Path) -> Result<bool> {
    let (kind, _) = app.current();
    let levels = kind.levels();
    let rows = table::rows(app);
    let series = series(&rows, |r| {
        let at = level_points(r, |p| p.accuracy * 100.0);
        clean_point(r).into_iter().chain(at).collect()
    });
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Ok(false);
    }
    let labels: Vec<String> = (0..=levels)
        .map(|l| {
            if l == 0 {
                "clean".into()
            } else {
                app.short_label(kind, l)
            }
        })
        .collect();
    save_png(path, (900, 560), |root| {
        line_chart(
            root,
            &format!("Accuracy under {} ({})", kind.name(), app.meta.dataset),
            "level",
            "accuracy (%)",
            (-0.2, levels as f64 + 0.2),
            (0.0, 100.0),
            &series,
            &level_tick(&labels, 0.0),
            &|y| format!("{y:.0}"),
        )
    })?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn line_chart(
    root: &super::plot::Area,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: (f64, f64),
    y: (f64, f64),
    series: &[Series],
    x_fmt: &dyn Fn(&f64) -> String,
    y_fmt: &dyn Fn(&f64) -> String,
) -> Result<()> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_fmt)
        .y_label_formatter(y_fmt)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(plot_err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(plot_err)?;
    }
    legend(&mut chart, legend_corner(x, y, series))
}

/// The corner of the plot whose quarter-width, third-height box holds the
/// fewest points (upper right first on a tie), for the legend.
fn legend_corner(x: (f64, f64), y: (f64, f64), series: &[Series]) -> SeriesLabelPosition {
    let norm = |v: f64, (lo, hi): (f64, f64)| (v - lo) / (hi - lo).max(1e-12);
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let inside = |right: bool, upper: bool| {
        series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .filter(|&&(px, py)| {
                let (u, v) = (norm(px, x), norm(py, y));
                (if right { u >= 0.7 } else { u <= 0.3 })
                    && (if upper { v >= 0.6 } else { v <= 0.4 })
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| inside(right, upper))
        .map(|(pos, _, _)| pos)
        .unwrap_or(SeriesLabelPosition::UpperRight)
}

/// The legend of `chart`'s series at `pos`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(pos)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

pub(super) fn ds_chart(app: &App, path: &Path) -> Result<bool> {
    let (kind, level) = app.current();
    let levels = kind.levels();
    let rows = table::rows(app);
    let series = series(&rows, |r| level_points(r, |p| p.ds_mean).collect());
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Ok(false);
    }
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let labels: Vec<String> = (0..=levels).map(|l| app.short_label(kind, l)).collect();
    let hists: Vec<(usize, &Histogram)> = rows
        .iter()
        .filter_map(|r| {
            let p = r.level(level).final_value()?;
            Some((r.model, &p.ds_histogram))
        })
        .collect();
    save_png(path, (1400, 560), |root| {
        let (left, right) = root.split_horizontally(700);
        line_chart(
            &left,
            &format!("Mean DS under {}", kind.name()),
            "level",
            "mean DS",
            (0.8, levels as f64 + 0.2),
            (0.0, ymax),
            &series,
            &level_tick(&labels, 1.0),
            &|y| num(*y),
        )?;
        if hists.is_empty() {
            return Ok(());
        }
        let lo = hists
            .iter()
            .map(|(_, h)| h.lo)
            .fold(f64::INFINITY, f64::min);
        let hi = hists
            .iter()
            .map(|(_, h)| h.hi)
            .fold(f64::NEG_INFINITY, f64::max);
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let cmax = hists
            .iter()
            .flat_map(|(_, h)| h.counts.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&right)
            .caption(
                format!("DS histogram at {}", app.label(kind, level)),
                (FAMILY, 22),
            )
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..cmax * 1.1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("DS = ||F(x) - F(x')||²")
            .y_desc("samples")
            .y_label_formatter(&count_label)
            .label_style((FAMILY, 14))
            .draw()
            .map_err(plot_err)?;
        for (m, h) in &hists {
            let c = COLORS[m % COLORS.len()];
            let w = (h.hi - h.lo) / h.counts.len().max(1) as f64;
            chart
                .draw_series(h.counts.iter().enumerate().map(|(i, &n)| {
                    let x0 = h.lo + w * i as f64;
                    Rectangle::new([(x0, 0.0), (x0 + w, n as f64)], c.mix(0.35).filled())
                }))
                .map_err(plot_err)?
                .label(app.meta.models[*m].as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })?;
    Ok(true)
}

pub(super) fn pgd_chart(app: &App, path: &Path) -> Result<bool> {
    let pgd = &app.meta.pgd;
    let rows = table::rows(app);
    let series = series(&rows, |r| {
        let at = pgd
            .iter()
            .zip(&r.pgd)
            .filter_map(|(s, e)| e.value.map(|p| (s.eps * 255.0, p.accuracy * 100.0)));
        clean_point(r).into_iter().chain(at).collect()
    });
    if rows.iter().all(|r| r.pgd.iter().all(|e| e.value.is_none())) {
        return Ok(false);
    }
    let xmax = pgd.iter().map(|s| s.eps * 255.0).fold(1.0, f64::max);
    let iters = pgd.first().map(|s| s.iters).unwrap_or(0);
    save_png(path, (900, 560), |root| {
        line_chart(
            root,
            &format!("PGD accuracy ({iters} steps)"),
            "eps (x/255)",
            "accuracy (%)",
            (-0.3, xmax * 1.05 + 0.3),
            (0.0, 100.0),
            &series,
            &|x| format!("{x:.0}"),
            &|y| format!("{y:.0}"),
        )
    })?;
    Ok(true)
}
