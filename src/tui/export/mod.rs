//! `e`: the current view's numbers as JSON and its charts as PNG (plotters'
//! bitmap backend into an RGB buffer, saved with the `image` crate; text in
//! the embedded DejaVu Sans: plotters 0.3.7 places glyphs without their left
//! side bearing, which a monospaced font turns into gaps after ":" or "-").
//!
//! `json`: `view.json`; `charts`: accuracy, DS and PGD; `kstar`: the k*
//! chart; `violin`: the k* paper's Figure 4 (left), also for `semcon kstar
//! --plot`; here: the export itself, the font, PNG saving and the sample.

mod charts;
mod json;
mod kstar;
mod plot;
mod violin;

pub use json::view_json;
pub use plot::register_font;
pub use violin::kstar_violins;

use super::app::App;
use super::panels;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

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
    let charts: [(&str, Chart); 7] = [
        ("accuracy.png", charts::accuracy_chart),
        ("ds.png", charts::ds_chart),
        ("pgd.png", charts::pgd_chart),
        ("kstar.png", kstar::kstar_chart),
        ("kstar_violins.png", kstar::kstar_violin_chart),
        ("embedding.png", kstar::embedding_chart),
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

/// The shown sample as a captioned figure: the original (with its true
/// label), the perturbed copy (with the perturbation), then one column per
/// model: its explanation as a heat map when the sample panel shows one
/// (`x`; every model on the scale of the largest map), else the perturbed
/// image, captioned with the model's name and its prediction before → after
/// (✓/✗ against the label) and the sample's DS. Text on its baseline
/// ([`crate::figure`]).
fn sample_png(app: &App, path: &Path) -> Result<bool> {
    use crate::figure::{heat_overlay, scale_max, Align, Canvas, Palette};
    let Some(s) = app.sample_images() else {
        return Ok(false);
    };
    let (kind, level) = app.current();
    let side = s.width.max(s.height).max(1);
    let scale = (160.0 / side as f32).max(0.25);
    let (cw, ch) = (
        ((s.width as f32 * scale).round() as i64).max(8),
        ((s.height as f32 * scale).round() as i64).max(8),
    );
    let n = app.n_models() as i64;
    let (gap, top, cap) = (12i64, 44i64, 36i64);
    let width = gap + (2 + n) * (cw + gap);
    let height = top + ch + cap + gap;
    let mut c = Canvas::new(width as u32, height as u32);
    let class = |k: u32| {
        app.meta
            .class_names
            .get(k as usize)
            .cloned()
            .unwrap_or_else(|| k.to_string())
    };
    let (black, dim) = ([0, 0, 0], [90, 90, 90]);
    let title = match app.explain {
        Some(m) => format!(
            "sample {} of {} · {} · {} (one scale for every model)",
            app.sample + 1,
            app.meta.samples,
            app.label(kind, level),
            m.title()
        ),
        None => format!(
            "sample {} of {} · {}",
            app.sample + 1,
            app.meta.samples,
            app.label(kind, level)
        ),
    };
    c.text(gap as f32, 18.0, 14.0, &title, black, Align::Left);
    let x_of = |k: i64| gap + k * (cw + gap);
    let cap_y = (top + ch + 15) as f32;
    let centre = |k: i64| (x_of(k) + cw / 2) as f32;
    c.image(
        x_of(0),
        top,
        cw as u32,
        ch as u32,
        &s.original,
        s.channels,
        s.height,
        s.width,
    );
    c.image(
        x_of(1),
        top,
        cw as u32,
        ch as u32,
        &s.perturbed,
        s.channels,
        s.height,
        s.width,
    );
    c.text(
        centre(0),
        (top - 6) as f32,
        12.0,
        "original",
        dim,
        Align::Center,
    );
    c.text(
        centre(1),
        (top - 6) as f32,
        12.0,
        &app.label(kind, level),
        dim,
        Align::Center,
    );
    c.text(
        centre(0),
        cap_y,
        12.0,
        &format!("label: {}", class(s.label)),
        black,
        Align::Center,
    );
    let maps: Vec<Option<&crate::engine::ExplainMap>> =
        (0..app.n_models()).map(|m| app.explanation(m)).collect();
    let max = scale_max(maps.iter().flatten().map(|e| e.map.as_slice()));
    let palette = maps.iter().flatten().next().map(|e| Palette::of(e.method));
    let hw = s.width * s.height;
    for (k, r) in panels::table::rows(app).iter().enumerate() {
        let col = 2 + k as i64;
        match maps.get(k).copied().flatten() {
            Some(e) if e.map.len() == hw => {
                let palette = palette.unwrap_or(Palette::Magnitude);
                let px = heat_overlay(&e.map, max, palette, &s.perturbed, s.channels);
                c.image(
                    x_of(col),
                    top,
                    cw as u32,
                    ch as u32,
                    &px,
                    3,
                    s.height,
                    s.width,
                );
            }
            _ => c.image(
                x_of(col),
                top,
                cw as u32,
                ch as u32,
                &s.perturbed,
                s.channels,
                s.height,
                s.width,
            ),
        }
        c.text(
            centre(col),
            (top - 6) as f32,
            12.0,
            r.name,
            black,
            Align::Center,
        );
        let p = r.sample(app.sample, level);
        let mark = |v: Option<u32>| match v {
            Some(v) if v == s.label => format!("{} ✓", class(v)),
            Some(v) => format!("{} ✗", class(v)),
            None => "…".into(),
        };
        let ok = p.after == Some(s.label);
        let colour = if ok { [20, 130, 40] } else { [200, 30, 30] };
        c.text(
            centre(col),
            cap_y,
            11.0,
            &format!("{} → {}", mark(p.before), mark(p.after)),
            colour,
            Align::Center,
        );
        if let Some(d) = p.ds {
            c.text(
                centre(col),
                cap_y + 15.0,
                11.0,
                &format!("DS {d:.4}"),
                dim,
                Align::Center,
            );
        }
    }
    crate::figure::save_png(&c, path)?;
    Ok(true)
}
