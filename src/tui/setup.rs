//! What the explorer opens: the checkpoints (given, or the shipped ones), the
//! dataset (given, or the default that fits the models), and the settings.

use super::app::{Meta, PgdSetting, MAX_MODELS};
use super::image::ColorMode;
use crate::cli::ExploreArgs;
use crate::data::ImageSet;
use crate::engine::Settings;
use crate::metrics::pgd::PgdConfig;
use crate::model::{self, Model};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Samples evaluated when --samples is not given.
pub const DEFAULT_SAMPLES: usize = 2000;

/// The shipped variants, in the order the paper compares them.
pub const VARIANTS: [&str; 4] = ["standard", "continuity", "adv", "adv-continuity"];

/// Everything the event loop needs.
pub struct Session {
    pub models: Vec<Model>,
    /// In the models' channel layout.
    pub set: Arc<ImageSet>,
    pub settings: Settings,
    pub meta: Meta,
    pub export_dir: PathBuf,
    /// A note for the status line (e.g. checkpoints left out).
    pub note: Option<String>,
}

/// `DIR/*.safetensors`: the four variants first (in paper order), then the
/// others sorted by name.
pub fn checkpoints_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    let rank = |p: &PathBuf| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let r = VARIANTS
            .iter()
            .position(|v| *v == stem)
            .unwrap_or(VARIANTS.len());
        (r, stem.to_string())
    };
    found.sort_by_key(rank);
    found
}

/// Where the shipped checkpoints are looked for: ./checkpoints, then the
/// repository the executable was built in (found from the executable's path,
/// else the source directory baked in at compile time).
pub fn checkpoint_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("checkpoints")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(repo) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("Cargo.toml").is_file() && d.join("checkpoints").is_dir())
        {
            dirs.push(repo.join("checkpoints"));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints"));
    dirs
}

/// The first directory of `dirs` that holds checkpoints, and its checkpoints.
pub fn default_checkpoints(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    for d in dirs {
        let found = checkpoints_in(d);
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "no checkpoints found (looked for *.safetensors in {}); pass models explicitly: \
         semcon explore --checkpoint MODEL.safetensors [--checkpoint MODEL2.safetensors ...] \
         --dataset builtin:fashion-mnist",
        looked.join(", ")
    )
}

/// The dataset for `models` when none is given: the colour-shift split when
/// every model takes 3 channels and a sidecar says it was trained on colour data.
pub fn default_dataset(models: &[Model]) -> &'static str {
    let rgb = models.iter().all(|m| m.config().in_channels == 3);
    let colour = models.iter().any(|m| {
        m.sidecar
            .dataset
            .as_deref()
            .is_some_and(|d| d.contains("colour") || d.contains("color"))
    });
    if rgb && colour {
        "builtin:fashion-mnist:colour"
    } else {
        "builtin:fashion-mnist"
    }
}

/// Names for the panels: file stems, made unique.
pub fn model_names(paths: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in paths {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let mut name = stem.clone();
        let mut i = 2;
        while names.contains(&name) {
            name = format!("{stem}#{i}");
            i += 1;
        }
        names.push(name);
    }
    names
}

/// Loads models and data for the explorer.
pub fn load(a: &ExploreArgs) -> Result<Session> {
    if !(a.demo_secs > 0.0 && a.demo_secs.is_finite()) {
        bail!(
            "--demo-secs must be a positive finite number, got {}",
            a.demo_secs
        );
    }
    let mut note = None;
    let paths = if a.model.checkpoints.is_empty() {
        let mut found = default_checkpoints(&checkpoint_dirs())?;
        if found.len() > MAX_MODELS {
            note = Some(format!(
                "showing the first {MAX_MODELS} of {} checkpoints",
                found.len()
            ));
            found.truncate(MAX_MODELS);
        }
        found
    } else {
        if a.model.checkpoints.len() > MAX_MODELS {
            bail!(
                "at most {MAX_MODELS} checkpoints can be compared side by side (got {})",
                a.model.checkpoints.len()
            );
        }
        a.model.checkpoints.clone()
    };
    let (device, device_notice) = crate::device::choose_arg(a.model.device.as_deref())?;
    if let Some(n) = device_notice {
        // Shown in the message line; also on stderr for the scrollback.
        eprintln!("notice: {n}");
        note = Some(match note {
            Some(prev) => format!("{n}; {prev}"),
            None => n,
        });
    }
    let opts = a.model.options()?;
    let names = model_names(&paths);
    let mut models = Vec::new();
    for (p, name) in paths.iter().zip(names) {
        let mut m = model::load_named(p, &opts, &device)?;
        m.name = name;
        if let Some(n) = m.norm_notice() {
            eprintln!("notice: {n}");
            note = Some(match note {
                Some(prev) => format!("{prev}; {n}"),
                None => n,
            });
        }
        models.push(m);
    }
    let first = &models[0];
    if let Some(m) = models
        .iter()
        .find(|m| m.config().in_channels != first.config().in_channels)
    {
        bail!(
            "models {} and {} take different numbers of input channels ({} and {})",
            first.name,
            m.name,
            first.config().in_channels,
            m.config().in_channels
        );
    }
    let mut data = a.data.clone();
    if data.dataset.is_none() {
        data.dataset = Some(default_dataset(&models).to_string());
    }
    data.samples = match data.samples {
        None => Some(DEFAULT_SAMPLES),
        Some(0) => None,
        n => n,
    };
    let set = data.load(first.input_size)?;
    for m in &models {
        set.check_labels(m.num_classes())
            .with_context(|| format!("checkpoint {}", m.path.display()))?;
    }
    // Side by side, models with different class counts are more likely a
    // mix-up than intended: allowed (the labels fit all), but said.
    let counts: Vec<usize> = models.iter().map(|m| m.num_classes()).collect();
    if counts.iter().any(|&k| k != counts[0]) {
        let each: Vec<String> = models
            .iter()
            .map(|m| format!("{} {}", m.name, m.num_classes()))
            .collect();
        let n = format!(
            "the models have different numbers of classes ({}); each DS is over its own logits",
            each.join(", ")
        );
        eprintln!("notice: {n}");
        note = Some(match note {
            Some(prev) => format!("{prev}; {n}"),
            None => n,
        });
    }
    if let Some(n) = crate::eval::gray_notice(&set, &models) {
        eprintln!("notice: {n}");
        note = Some(match note {
            Some(prev) => format!("{prev}; {n}"),
            None => n,
        });
    }
    let set = crate::eval::images_for(first, &set)?;
    let class_names = crate::engine::class_names(first, &set);
    let batch = a
        .batch
        .unwrap_or(if device.is_cpu() { 64 } else { 512 })
        .max(1);
    let pgd: Vec<PgdConfig> = a
        .pgd
        .iter()
        .map(|&e| PgdConfig {
            seed: data.seed,
            ..PgdConfig::paper(e)
        })
        .collect();
    let meta = Meta {
        models: models.iter().map(|m| m.name.clone()).collect(),
        dataset: set.name.clone(),
        samples: set.len(),
        side: set.height.min(set.width),
        class_names,
        pgd: pgd
            .iter()
            .map(|c| PgdSetting {
                eps: c.eps as f64,
                step: c.step as f64,
                iters: c.iters,
            })
            .collect(),
        device: crate::device::describe(&device),
        color: ColorMode::detect(),
        demo: a
            .demo
            .then(|| Duration::from_secs_f64(a.demo_secs.clamp(0.2, 3600.0))),
        checkpoints: models
            .iter()
            .map(|m| m.path.display().to_string())
            .collect(),
        seed: data.seed,
    };
    Ok(Session {
        models,
        set: Arc::new(set),
        settings: Settings {
            batch,
            seed: data.seed,
            pgd,
        },
        meta,
        export_dir: a.export_dir.clone(),
        note,
    })
}
