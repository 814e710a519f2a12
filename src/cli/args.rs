//! The argument groups several commands share (`ModelArgs`, `DataArgs`), the
//! value parsers of flags (`--batch`, pixel fractions, `--input-size`) and
//! `--format`. Commands flatten these; what the flags mean lives in
//! [`crate::session`].

use crate::data::presets;
use crate::data::Split;
use crate::data::{preprocess::Preprocess, resample::Filter};
use crate::metrics::pgd;
use crate::model::ModelOptions;
use crate::session::{DataChoice, ModelChoice};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// Flags that describe the model(s).
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// Checkpoint (.safetensors, .pth, .pt, .ckpt, .bin); may be repeated where several models make sense.
    #[arg(long = "checkpoint", short = 'c')]
    pub checkpoints: Vec<PathBuf>,
    /// Per-channel mean of the model's normalisation, e.g. 0.485,0.456,0.406.
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel std of the model's normalisation.
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Input size HxW (or one number) images are resized to (image folders).
    #[arg(long)]
    pub input_size: Option<String>,
    /// Class names, comma separated, or a file: one name per line, or a JSON
    /// array of names.
    #[arg(long, value_delimiter = ',')]
    pub class_names: Option<Vec<String>>,
    /// auto, cpu, cuda or cuda:N [default: auto: the GPU when this build has
    /// CUDA and one answers, else the CPU].
    #[arg(long)]
    pub device: Option<String>,
}

impl ModelArgs {
    /// What the flags choose ([`crate::session::ModelChoice`]).
    pub fn choice(&self) -> Result<ModelChoice> {
        let input_size = match &self.input_size {
            None => None,
            Some(s) => Some(parse_size(s)?),
        };
        Ok(ModelChoice {
            checkpoints: self.checkpoints.clone(),
            options: ModelOptions {
                mean: self.mean.clone(),
                std: self.std.clone(),
                input_size,
                class_names: match &self.class_names {
                    Some(v) => Some(class_names_arg(v)?),
                    None => None,
                },
            },
            device: self.device.clone(),
        })
    }
}

/// `--class-names`: the names given, or those of the one file named (one
/// per line, or a JSON array).
fn class_names_arg(v: &[String]) -> Result<Vec<String>> {
    let [one] = v else {
        return Ok(v.to_vec());
    };
    let p = std::path::Path::new(one);
    if !p.is_file() {
        return Ok(v.to_vec());
    }
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("--class-names {}: cannot read it as text", p.display()))?;
    let names: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).with_context(|| {
            format!("--class-names {}: not a JSON array of strings", p.display())
        })?
    } else {
        text.lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .filter(|l| !l.trim().is_empty())
            .collect()
    };
    if names.is_empty() {
        bail!("--class-names {}: holds no names", p.display());
    }
    Ok(names)
}

pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parts: Vec<&str> = s.split(['x', 'X', ',']).collect();
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .with_context(|| format!("invalid --input-size '{s}' (expected H or HxW)"))
    };
    match parts.as_slice() {
        [a] => Ok((p(a)?, p(a)?)),
        [a, b] => Ok((p(a)?, p(b)?)),
        _ => bail!("invalid --input-size '{s}' (expected H or HxW)"),
    }
}

/// Flags that select the data.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset: builtin:fashion-mnist, an idx/CIFAR directory or file, an image folder, or .npz;
    /// add :colour for the colour-shift split.
    #[arg(long, short = 'd')]
    pub dataset: Option<String>,
    /// Which split of a dataset that has both (idx/CIFAR directories, image
    /// folders with train/ and test/, .npz with x_train/x_test) [default: test;
    /// train for `semcon train`].
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// Use a seeded random subset of N samples.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Seed for --samples and every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip image files that do not decode (with a warning) instead of failing
    /// (files without an image extension are always ignored, with a notice).
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Image folders: torchvision's eval preprocessing, resize the shorter
    /// side to N (PIL's antialiased resampling) ... [default: the model's
    /// sidecar resize_size; without either, images are resized to the
    /// model's input size].
    #[arg(long)]
    pub resize: Option<usize>,
    /// ... then center crop NxN [default: the sidecar's crop_size, else --resize].
    #[arg(long)]
    pub crop: Option<usize>,
    /// ... with this resampling [default: the sidecar's interpolation, else bilinear].
    #[arg(long, value_enum)]
    pub interpolation: Option<Filter>,
    /// The preprocessing of torchvision's pretrained weights: imagenet
    /// (256/224 bilinear), a model (resnet50: its DEFAULT weights) or
    /// MODEL.WEIGHTS (resnet50.IMAGENET1K_V1); --resize/--crop/--interpolation
    /// override parts of it. The list: docs/formats.md.
    #[arg(long)]
    pub preset: Option<String>,
    /// Keep a seeded, stratified sample of N images per class (image folders:
    /// before decoding; other datasets: after loading).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Decode image folders afresh, without reading or writing the
    /// decoded-image cache ($SEMCON_CACHE_DIR, else ~/.cache/semcon).
    #[arg(long)]
    pub no_cache: bool,
}

impl DataArgs {
    /// What the flags choose ([`crate::session::DataChoice`]).
    pub fn choice(&self) -> Result<DataChoice> {
        let base = match &self.preset {
            Some(p) => Some(presets::preset(p).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let preprocess = match (base, self.resize, self.crop) {
            (None, None, None) => {
                if self.interpolation.is_some() {
                    bail!("--interpolation needs --resize (or --preset)");
                }
                None
            }
            (None, None, Some(_)) => {
                bail!("--crop needs --resize (torchvision resizes the shorter side, then crops)")
            }
            (base, resize, crop) => {
                let resize = resize.or(base.map(|b| b.resize)).expect("resize or preset");
                let crop = crop.or(base.map(|b| b.crop)).unwrap_or(resize);
                let filter = self
                    .interpolation
                    .or(base.map(|b| b.filter))
                    .unwrap_or(Filter::Bilinear);
                Some(Preprocess::new(resize, crop, filter).map_err(anyhow::Error::msg)?)
            }
        };
        Ok(DataChoice {
            dataset: self.dataset.clone(),
            split: self.split,
            samples: self.samples,
            seed: self.seed,
            skip_bad_images: self.skip_bad_images,
            preprocess,
            per_class: self.per_class,
            num_classes: None,
            cache: !self.no_cache,
            stream: false,
        })
    }
}

/// `--batch`: a whole number of at least 1.
pub fn parse_batch(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// Parses a pixel-space value (`8/255` or `0.03`) that must lie in [0,1].
pub fn parse_frac(s: &str) -> std::result::Result<f32, String> {
    let v = pgd::parse_fraction(s)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "{s} is outside [0,1] (pixel values are in [0,1]; use e.g. 8/255)"
        ));
    }
    Ok(v)
}
