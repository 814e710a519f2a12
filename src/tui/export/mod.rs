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
