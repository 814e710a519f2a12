//! What the explorer opens ([`ExploreOptions`] -> [`Opened`]): the models and
//! data resolved by [`crate::session`], checked side by side, and the
//! settings and panel metadata of the run.

use super::app::{Meta, PgdSetting, MAX_MODELS};
use super::image::ColorMode;
use crate::data::ImageSet;
use crate::engine::Settings;
use crate::metrics::pgd::PgdConfig;
use crate::model::Model;
use crate::session::{self, DataChoice, ModelChoice, DEFAULT_SAMPLES};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything the event loop needs: the loaded models and data, the engine's
/// settings and what the panels show about them.
pub struct Opened {
    pub models: Vec<Model>,
    /// In the models' channel layout.
    pub set: Arc<ImageSet>,
    pub settings: Settings,
    pub meta: Meta,
    pub export_dir: PathBuf,
    /// A note for the status line (e.g. checkpoints left out).
    pub note: Option<String>,
}

/// What the explorer is asked to open (the flags of `semcon explore`).
#[derive(Clone, Debug, Default)]
pub struct ExploreOptions {
    pub model: ModelChoice,
    pub data: DataChoice,
    /// Images per batch (default: 64 on the CPU, 512 on a GPU).
    pub batch: Option<usize>,
    /// PGD eps values.
    pub pgd: Vec<f32>,
    /// Start in demo mode.
    pub demo: bool,
    /// Seconds per demo step.
    pub demo_secs: f64,
    /// Where `e` writes exports.
    pub export_dir: PathBuf,
}

/// Loads models and data for the explorer.
pub fn load(a: &ExploreOptions) -> Result<Opened> {
    if !(a.demo_secs > 0.0 && a.demo_secs.is_finite()) {
        bail!(
            "--demo-secs must be a positive finite number, got {}",
            a.demo_secs
        );
    }
    // Notes for the message line, also on stderr for the scrollback.
    let mut notes: Vec<String> = Vec::new();
    let paths = if a.model.checkpoints.is_empty() {
        let mut found = session::default_checkpoints(&session::checkpoint_dirs())?;
        if found.len() > MAX_MODELS {
            notes.push(format!(
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
        eprintln!("notice: {n}");
        notes.insert(0, n);
    }
    let mut models = session::load_models(&paths, &a.model.options, &device)?;
    for (m, name) in models.iter_mut().zip(session::model_names(&paths)) {
        m.name = name;
        if let Some(n) = m.norm_notice() {
            eprintln!("notice: {n}");
            notes.push(n);
        }
    }
    let first = &models[0];
    if let Some(m) = models
        .iter()
        .find(|m| m.in_channels() != first.in_channels())
    {
        bail!(
            "models {} and {} take different numbers of input channels ({} and {})",
            first.name,
            m.name,
            first.in_channels(),
            m.in_channels()
        );
    }
    let mut data = a.data.clone();
    data.stream = true;
    data.samples = match data.samples {
        None => Some(DEFAULT_SAMPLES),
        Some(0) => None,
        n => n,
    };
    let (set, gray) = session::open_data(&data, &models)?;
    // Side by side, models with different class counts are more likely a
    // mix-up than intended: allowed (the labels fit all), but said.
    for n in session::class_count_notice(&models).into_iter().chain(gray) {
        eprintln!("notice: {n}");
        notes.push(n);
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
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
        taps: crate::model::common_taps(&models),
        decoding: set.data.decoding().map(|_| set.data.clone()),
    };
    Ok(Opened {
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
