//! `semcon info CHECKPOINT`: what semcon makes of a checkpoint before any
//! data is read: the family and closest torchvision variant, the parameter
//! count, the input it takes, its normalisation, class names and taps, each
//! with where it came from (state dict, sidecar, flag, default).

use super::args::{Format, ModelArgs};
use crate::model::{Model, ResNetConfig, Stem, Tap};
use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The checkpoint (.safetensors, .pth, .pt, .ckpt, .bin).
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// table (readable) or json.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A setting and where it came from.
#[derive(Serialize, Debug)]
pub struct Setting<T> {
    pub value: T,
    /// "state dict", "sidecar", "flag" or "default".
    pub source: &'static str,
}

/// A tap and the size of its features.
#[derive(Serialize, Debug)]
pub struct TapInfo {
    pub name: String,
    pub dim: usize,
}

/// Everything `info` reports (also its JSON).
#[derive(Serialize, Debug)]
pub struct Info {
    pub checkpoint: String,
    pub family: String,
    pub variant: Setting<String>,
    pub parameters: usize,
    pub stem: Setting<String>,
    pub blocks: Setting<Vec<usize>>,
    pub groups: Setting<usize>,
    pub width_per_group: Setting<usize>,
    pub in_channels: Setting<usize>,
    pub num_classes: Setting<usize>,
    pub input_size: Setting<Option<[usize; 2]>>,
    pub mean: Setting<Vec<f32>>,
    pub std: Setting<Vec<f32>>,
    pub class_names: Setting<Option<Vec<String>>>,
    pub taps: Vec<TapInfo>,
}

fn from<T>(value: T, flag: bool, sidecar: bool, default: &'static str) -> Setting<T> {
    let source = if flag {
        "flag"
    } else if sidecar {
        "sidecar"
    } else {
        default
    };
    Setting { value, source }
}

fn dict<T>(value: T) -> Setting<T> {
    Setting {
        value,
        source: "state dict",
    }
}

/// What semcon makes of a loaded model (`flags`: what the user stated).
pub fn describe(m: &Model, flags: &crate::model::ModelOptions) -> Info {
    let c: &ResNetConfig = m.config();
    let sc = &m.sidecar;
    let taps = Tap::ALL
        .iter()
        .map(|&t| TapInfo {
            name: t.to_string(),
            dim: match t {
                Tap::Logits => c.num_classes,
                Tap::Penultimate => c.penultimate_dim(),
                Tap::Layer(i) => c.stage_channels(i as usize - 1),
            },
        })
        .collect();
    Info {
        checkpoint: m.path.display().to_string(),
        family: "ResNet".into(),
        variant: dict(c.arch_name()),
        parameters: c.parameter_count(),
        stem: dict(
            match c.stem {
                Stem::Imagenet => "imagenet (7x7 stride 2 + 3x3 max pool)".to_string(),
                Stem::Cifar => "cifar (3x3 stride 1, no max pool)".to_string(),
            } + &format!(", width {}", c.width),
        ),
        blocks: dict(c.layers.clone()),
        groups: dict(c.groups),
        width_per_group: dict(c.width_per_group()),
        in_channels: dict(c.in_channels),
        num_classes: dict(c.num_classes),
        input_size: from(
            m.input_size.map(|(h, w)| [h, w]),
            flags.input_size.is_some(),
            sc.input_size.is_some(),
            "default",
        ),
        mean: from(
            m.mean.clone(),
            flags.mean.is_some(),
            sc.mean.is_some(),
            "default",
        ),
        std: from(
            m.std.clone(),
            flags.std.is_some(),
            sc.std.is_some(),
            "default",
        ),
        class_names: from(
            m.class_names.clone(),
            flags.class_names.is_some(),
            sc.class_names.is_some(),
            "default",
        ),
        taps,
    }
}

/// The readable form of [`Info`].
pub fn table(i: &Info) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let row = |s: &mut String, k: &str, v: String, src: &str| {
        let _ = writeln!(s, "{k:<15} {v}  ({src})");
    };
    let _ = writeln!(s, "{:<15} {}", "checkpoint", i.checkpoint);
    let _ = writeln!(s, "{:<15} {}", "family", i.family);
    row(&mut s, "variant", i.variant.value.clone(), i.variant.source);
    let _ = writeln!(s, "{:<15} {}", "parameters", thousands(i.parameters));
    row(&mut s, "stem", i.stem.value.clone(), i.stem.source);
    row(
        &mut s,
        "blocks",
        format!("{:?}", i.blocks.value),
        i.blocks.source,
    );
    row(
        &mut s,
        "groups",
        format!(
            "{} x {} (width per group)",
            i.groups.value, i.width_per_group.value
        ),
        i.groups.source,
    );
    row(
        &mut s,
        "in channels",
        i.in_channels.value.to_string(),
        i.in_channels.source,
    );
    row(
        &mut s,
        "classes",
        i.num_classes.value.to_string(),
        i.num_classes.source,
    );
    let size = match i.input_size.value {
        Some([h, w]) => format!("{h}x{w}"),
        None => "not stated (image folders take the first image's size)".into(),
    };
    row(&mut s, "input size", size, i.input_size.source);
    let norm_src = |src: &str| {
        if src == "default" {
            "default: not normalised".to_string()
        } else {
            src.to_string()
        }
    };
    row(
        &mut s,
        "mean",
        format!("{:?}", i.mean.value),
        &norm_src(i.mean.source),
    );
    row(
        &mut s,
        "std",
        format!("{:?}", i.std.value),
        &norm_src(i.std.source),
    );
    let names = match &i.class_names.value {
        Some(n) if n.len() > 6 => format!("{}, ... ({} names)", n[..6].join(", "), n.len()),
        Some(n) => n.join(", "),
        None => "none (the dataset's names are used)".into(),
    };
    row(&mut s, "class names", names, i.class_names.source);
    let taps: Vec<String> = i
        .taps
        .iter()
        .map(|t| format!("{} [{}]", t.name, t.dim))
        .collect();
    let _ = writeln!(s, "{:<15} {}", "taps", taps.join(", "));
    s
}

/// 25557032 -> "25,557,032".
fn thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn run(a: &InfoArgs) -> Result<()> {
    if !a.model.checkpoints.is_empty() {
        bail!("info takes the checkpoint as its argument, not --checkpoint");
    }
    let choice = a.model.choice()?;
    // Nothing runs: the CPU holds the weights whatever --device says.
    let device = candle_core::Device::Cpu;
    let m = crate::model::load_named(&a.checkpoint, &choice.options, &device)?;
    let info = describe(&m, &choice.options);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        Format::Table => print!("{}", table(&info)),
    }
    Ok(())
}
