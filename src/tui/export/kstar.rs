//! The k* chart: the selected model's classes, a histogram of k*/n each in
//! a grid (or, with more than 36 classes, the mean k*/n per class as bars),
//! coloured by pattern.

use super::plot::{count_label, plot_err, save_png, FAMILY};
use super::violin::pattern_color;
use crate::tui::app::{metric_name, App};
use crate::tui::kview;
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

pub(super) fn kstar_chart(app: &App, path: &Path) -> Result<bool> {
    let Some(r) = app.kstar(app.model) else {
        return Ok(false);
    };
    let cls = kview::classes(r);
    if cls.is_empty() {
        return Ok(false);
    }
    let title = format!(
        "k* per class · {} · layer {} · {}",
        app.meta.models[app.model],
        app.tap,
        metric_name(app.metric)
    );
    if cls.len() > 36 {
        // Too many classes for a grid: mean normalised k* per class.
        save_png(path, (1400, 600), |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(&title, (FAMILY, 22))
                .margin(14)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..cls.len() as f64, 0.0..1.0)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("class")
                .y_desc("mean k*/n")
                .label_style((FAMILY, 14))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(cls.iter().enumerate().map(|(i, c)| {
                    let col = pattern_color(c.pattern);
                    Rectangle::new([(i as f64, 0.0), (i as f64 + 0.9, c.mean)], col.filled())
                }))
                .map_err(plot_err)?;
            Ok(())
        })?;
        return Ok(true);
    }
    let cols = (cls.len() as f64).sqrt().ceil() as usize;
    let rows = cls.len().div_ceil(cols);
    save_png(path, (300 * cols as u32, 60 + 220 * rows as u32), |root| {
        let root = root.titled(&title, (FAMILY, 24)).map_err(plot_err)?;
        let cells = root.split_evenly((rows, cols));
        for (c, area) in cls.iter().zip(cells.iter()) {
            let cmax = c.counts.iter().copied().max().unwrap_or(1).max(1) as f64;
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!(
                        "{} [{}] μ={:.2} σ={:.2} s={}",
                        c.name,
                        c.pattern.unwrap_or('-'),
                        c.mean,
                        c.std,
                        c.skew.map(|s| format!("{s:+.2}")).unwrap_or("-".into())
                    ),
                    (FAMILY, 13),
                )
                .margin(6)
                .x_label_area_size(22)
                .y_label_area_size(36)
                .build_cartesian_2d(c.lo..c.hi.max(c.lo + 1e-9), 0.0..cmax * 1.1)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_labels(3)
                .y_labels(3)
                .y_label_formatter(&count_label)
                .label_style((FAMILY, 11))
                .draw()
                .map_err(plot_err)?;
            let w = (c.hi - c.lo) / c.counts.len().max(1) as f64;
            let col = pattern_color(c.pattern);
            chart
                .draw_series(c.counts.iter().enumerate().map(|(i, &n)| {
                    let x0 = c.lo + w * i as f64;
                    Rectangle::new([(x0, 0.0), (x0 + w, n as f64)], col.filled())
                }))
                .map_err(plot_err)?;
        }
        Ok(())
    })?;
    Ok(true)
}

/// The 2-D view (PCA or t-SNE) the k* panel shows, when it shows one: a
/// scatter coloured by class (tab10), with a legend of the class names.
pub(super) fn embedding_chart(app: &App, path: &Path) -> Result<bool> {
    let Some(e) = app.embedding(app.model) else {
        return Ok(false);
    };
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let names = &app.meta.class_names;
    let title = format!(
        "{} of layer {} · {} · {}",
        e.method.name(),
        app.tap,
        app.kstar_set_label(),
        app.meta.models[app.model]
    );
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &e.points {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if x0 > x1 {
        return Ok(false);
    }
    let (px, py) = (((x1 - x0) * 0.03).max(1e-9), ((y1 - y0) * 0.03).max(1e-9));
    save_png(path, (900, 760), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FAMILY, 20))
            .margin(14)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0 - px..x1 + px, y0 - py..y1 + py)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .label_style((FAMILY, 12))
            .draw()
            .map_err(plot_err)?;
        let mut classes: Vec<u32> = e.labels.clone();
        classes.sort_unstable();
        classes.dedup();
        for &c in &classes {
            let (r, g, b) = TAB10[c as usize % TAB10.len()];
            let col = RGBColor(r, g, b);
            let name = names
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| c.to_string());
            chart
                .draw_series(
                    e.points
                        .iter()
                        .zip(&e.labels)
                        .filter(|(_, &y)| y == c)
                        .map(|(p, _)| Circle::new((p[0], p[1]), 2, col.filled())),
                )
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x, y), 4, col.filled()));
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })?;
    Ok(true)
}

/// The selected model's k* as the k* paper's Figure 4 (left).
pub(super) fn kstar_violin_chart(app: &App, path: &Path) -> Result<bool> {
    let Some(r) = app.kstar(app.model) else {
        return Ok(false);
    };
    let title = format!(
        "k*/n per class, by skewness · {} · {} · layer {} · {}",
        app.meta.models[app.model],
        app.kstar_set_label(),
        app.tap,
        metric_name(app.metric)
    );
    super::violin::kstar_violins(r, &title, path)
}
