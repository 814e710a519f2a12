//! `e`: the current view's numbers as JSON and its charts as PNG (plotters'
//! bitmap backend into an RGB buffer, saved with the `image` crate; text in
//! the embedded DejaVu Sans: plotters 0.3.7 places glyphs without their left
//! side bearing, which a monospaced font turns into gaps after ":" or "-").

use super::app::{eps_label, metric_name, App};
use super::kview;
use crate::engine::JobKey;
use crate::eval::{Clean, PerturbRow};
use crate::perturb::Kind;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Registers the embedded font with plotters (once).
pub fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded chart font could not be loaded"))
    }
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub dir: PathBuf,
    pub files: Vec<String>,
}

impl Exported {
    /// One line for the status bar.
    pub fn summary(&self) -> String {
        // The directory first (absolute, so it can be found from any shell):
        // on a narrow terminal the end is what gets cut.
        let charts = self.files.iter().filter(|f| f.ends_with(".png")).count();
        let dir = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!(
            "exported to {}/ (view.json + {charts} chart{})",
            dir.display(),
            if charts == 1 { "" } else { "s" }
        )
    }
}

/// Writes `view.json` and the charts of what is computed into a new
/// directory under `base`.
pub fn export(app: &App, base: &Path) -> Result<Exported> {
    register_font()?;
    let (kind, level) = app.current();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stem = format!("{}-L{level}-{secs}", kind.name());
    let mut dir = base.join(&stem);
    let mut i = 2;
    while dir.exists() {
        dir = base.join(format!("{stem}-{i}"));
        i += 1;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut files = Vec::new();
    let json_path = dir.join("view.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&view_json(app))?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    files.push("view.json".to_string());
    type Chart = fn(&App, &Path) -> Result<bool>;
    let charts: [(&str, Chart); 5] = [
        ("accuracy.png", accuracy_chart),
        ("ds.png", ds_chart),
        ("pgd.png", pgd_chart),
        ("kstar.png", kstar_chart),
        ("sample.png", sample_png),
    ];
    for (name, draw) in charts {
        let p = dir.join(name);
        if draw(app, &p).with_context(|| format!("cannot write {}", p.display()))? {
            files.push(name.to_string());
        }
    }
    Ok(Exported { dir, files })
}

/// The numbers of the current view (only what has been computed; missing
/// values are null).
pub fn view_json(app: &App) -> Value {
    let (kind, level) = app.current();
    let m = &app.meta;
    let mut models = Map::new();
    for (i, name) in m.models.iter().enumerate() {
        // A level still computing is exported as far as it got, marked so.
        let levels: Vec<Value> = (1..=kind.levels())
            .map(|l| match app.perturb(i, kind, l) {
                Some(r) => {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    if let Value::Object(o) = &mut v {
                        o.insert("samples".into(), json!(r.preds.len()));
                        o.insert(
                            "final".into(),
                            json!(perturb_final(app, i, kind, l).is_some()),
                        );
                    }
                    v
                }
                None => json!({ "level": l, "label": app.label(kind, l) }),
            })
            .collect();
        let pgd: Vec<Value> = m
            .pgd
            .iter()
            .enumerate()
            .map(|(e, s)| {
                json!({
                    "eps": s.eps,
                    "eps_label": eps_label(s.eps),
                    "step": s.step,
                    "iters": s.iters,
                    "accuracy": app.pgd(i, e).map(|r| r.accuracy),
                    // PGD streams no partial accuracy: null until final.
                    "samples": app.pgd(i, e).map(|r| r.preds.len()),
                    "final": app.pgd(i, e).is_some(),
                })
            })
            .collect();
        let kstar = app.kstar(i).map(|r| {
            let cls = kview::classes(r);
            json!({
                "patterns": kview::groups(r),
                "mean": kview::overall_mean(r),
                "classes": cls,
            })
        });
        let sample = {
            let before = app.clean(i).and_then(|c| c.preds.get(app.sample).copied());
            let row = app.perturb(i, kind, level);
            json!({
                "prediction_before": before,
                "prediction_after": row.and_then(|r| r.preds.get(app.sample).copied()),
                "ds": row.and_then(|r| r.ds.get(app.sample).copied()),
            })
        };
        models.insert(
            name.clone(),
            json!({
                "clean_accuracy": app.clean(i).map(|c| c.accuracy),
                "clean_samples": app.clean(i).map(|c| c.preds.len()),
                "clean_final": clean_final(app, i).is_some(),
                "levels": levels,
                "pgd": pgd,
                "kstar": kstar,
                "sample": sample,
            }),
        );
    }
    json!({
        "dataset": m.dataset,
        "samples": m.samples,
        "device": m.device,
        "perturbation": {
            "name": kind.name(),
            "level": level,
            "param": kind.param(level, m.side),
            "label": app.label(kind, level),
        },
        "selected_model": m.models.get(app.model),
        "checkpoints": m.checkpoints,
        "seed": m.seed,
        "semcon_version": env!("CARGO_PKG_VERSION"),
        "kstar_patterns": {
            "A": "fractured (skew of k*/n above 0.5)",
            "B": "overlapped (skew between)",
            "C": "clustered (skew below -0.5)",
        },
        "kstar_layer": app.tap.to_string(),
        "kstar_distance": metric_name(app.metric),
        "sample": {
            "index": app.sample,
            "label": app.sample_images().map(|s| s.label),
            "class_name": app.sample_images().and_then(|s| m.class_names.get(s.label as usize)),
        },
        "models": models,
    })
}

/// Model `m`'s clean result once final (charts draw only finished numbers).
fn clean_final(app: &App, m: usize) -> Option<&Clean> {
    app.clean(m)
        .filter(|_| app.is_final(&JobKey::Clean { model: m }))
}

/// Model `m`'s result at a level once final.
fn perturb_final(app: &App, m: usize, kind: Kind, level: usize) -> Option<&PerturbRow> {
    app.perturb(m, kind, level).filter(|_| {
        app.is_final(&JobKey::Perturb {
            model: m,
            kind,
            level,
        })
    })
}

/// Renders into an RGB buffer and saves it as PNG.
fn save_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("bad image buffer"))?;
    img.save(path)?;
    Ok(())
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("chart: {e:?}")
}

fn accuracy_chart(app: &App, path: &Path) -> Result<bool> {
    let (kind, _) = app.current();
    let levels = kind.levels();
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..app.n_models())
        .map(|m| {
            let mut pts = Vec::new();
            if let Some(c) = clean_final(app, m) {
                pts.push((0.0, c.accuracy * 100.0));
            }
            for l in 1..=levels {
                if let Some(r) = perturb_final(app, m, kind, l) {
                    pts.push((l as f64, r.accuracy * 100.0));
                }
            }
            (app.meta.models[m].clone(), pts)
        })
        .collect();
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
            &|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            },
            &|y| format!("{y:.0}"),
        )
    })?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn line_chart(
    root: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: (f64, f64),
    y: (f64, f64),
    series: &[(String, Vec<(f64, f64)>)],
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
    chart
        .configure_series_labels()
        .position(legend_corner(x, y, series))
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The corner of the plot whose quarter-width, third-height box holds the
/// fewest points (upper right first on a tie), for the legend.
fn legend_corner(
    x: (f64, f64),
    y: (f64, f64),
    series: &[(String, Vec<(f64, f64)>)],
) -> SeriesLabelPosition {
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

fn ds_chart(app: &App, path: &Path) -> Result<bool> {
    let (kind, level) = app.current();
    let levels = kind.levels();
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..app.n_models())
        .map(|m| {
            let pts = (1..=levels)
                .filter_map(|l| perturb_final(app, m, kind, l).map(|r| (l as f64, r.ds_mean)))
                .collect();
            (app.meta.models[m].clone(), pts)
        })
        .collect();
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
    let hists: Vec<(usize, crate::metrics::Histogram)> = (0..app.n_models())
        .filter_map(|m| perturb_final(app, m, kind, level).map(|r| (m, r.ds_histogram.clone())))
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
            &|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 1.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            },
            &|y| super::ui::num(*y),
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
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })?;
    Ok(true)
}

fn pgd_chart(app: &App, path: &Path) -> Result<bool> {
    let pgd = &app.meta.pgd;
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..app.n_models())
        .map(|m| {
            let mut pts = Vec::new();
            if let Some(c) = clean_final(app, m) {
                pts.push((0.0, c.accuracy * 100.0));
            }
            for (e, s) in pgd.iter().enumerate() {
                if let Some(r) = app.pgd(m, e) {
                    pts.push((s.eps * 255.0, r.accuracy * 100.0));
                }
            }
            (app.meta.models[m].clone(), pts)
        })
        .collect();
    if (0..app.n_models()).all(|m| (0..pgd.len()).all(|e| app.pgd(m, e).is_none())) {
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

fn kstar_chart(app: &App, path: &Path) -> Result<bool> {
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

fn pattern_color(p: Option<char>) -> RGBColor {
    match p {
        Some('A') => RGBColor(214, 39, 40),
        Some('C') => RGBColor(44, 160, 44),
        _ => RGBColor(255, 127, 14),
    }
}

/// The original and perturbed sample side by side, upscaled.
fn sample_png(app: &App, path: &Path) -> Result<bool> {
    let Some(s) = app.sample_images() else {
        return Ok(false);
    };
    let scale = (256 / s.width.max(s.height).max(1)).max(1) as u32;
    let (w, h) = (s.width as u32 * scale, s.height as u32 * scale);
    let gap = 8;
    let mut img = image::RgbImage::from_pixel(2 * w + gap, h, image::Rgb([255, 255, 255]));
    let plane = s.width * s.height;
    for (k, px) in [&s.original, &s.perturbed].into_iter().enumerate() {
        let ox = k as u32 * (w + gap);
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = ((x / scale) as usize, (y / scale) as usize);
                let v = |c: usize| {
                    let c = if s.channels >= 3 { c } else { 0 };
                    let f = px
                        .get(c * plane + sy * s.width + sx)
                        .copied()
                        .unwrap_or(0.0);
                    (f.clamp(0.0, 1.0) * 255.0).round() as u8
                };
                img.put_pixel(ox + x, y, image::Rgb([v(0), v(1), v(2)]));
            }
        }
    }
    img.save(path)?;
    Ok(true)
}

/// A count axis label: whole numbers only (no "200.0", no "0.5 samples").
fn count_label(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}
