//! `semcon info CHECKPOINT`: what semcon makes of a checkpoint before any
//! data is read: the family and closest torchvision variant, the parameter
//! count, the input it takes, its normalisation, class names and taps, each
//! with where it came from (state dict, sidecar, flag, default).

use super::args::{Format, ModelArgs};
use crate::model::{net::Net, Model, Stem};
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

/// A tap, the size of its features and the torchvision module it reads.
#[derive(Serialize, Debug)]
pub struct TapInfo {
    pub name: String,
    pub dim: usize,
    pub module: String,
}

/// Everything `info` reports (also its JSON).
#[derive(Serialize, Debug)]
pub struct Info {
    pub checkpoint: String,
    pub family: String,
    pub variant: Setting<String>,
    pub parameters: usize,
    /// ResNets: the stem, blocks per stage, groups and width per group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stem: Option<Setting<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Setting<Vec<usize>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Setting<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width_per_group: Option<Setting<usize>>,
    /// The other families' settings (patch size, widths, heads, eps, ...),
    /// each with its source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<crate::model::described::Setting>,
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
    let sc = &m.sidecar;
    let taps = m
        .net
        .taps()
        .into_iter()
        .map(|(t, dim, module)| TapInfo {
            name: t.to_string(),
            dim,
            module,
        })
        .collect();
    let (parameters, settings) = match &m.net {
        Net::ResNet(r) => (r.config.parameter_count(), vec![]),
        Net::Layers(l) => (l.params, l.settings.clone()),
    };
    let c = m.resnet_config();
    // A ViT's input size comes from its position embedding unless stated.
    let fixed = matches!(&m.net, Net::Layers(l) if l.image_size.is_some());
    Info {
        checkpoint: m.path.display().to_string(),
        family: m.net.family().into(),
        variant: dict(m.arch_name()),
        parameters,
        stem: c.map(|c| {
            dict(
                match c.stem {
                    Stem::Imagenet => "imagenet (7x7 stride 2 + 3x3 max pool)".to_string(),
                    Stem::Cifar => "cifar (3x3 stride 1, no max pool)".to_string(),
                } + &format!(", width {}", c.width),
            )
        }),
        blocks: c.map(|c| dict(c.layers.clone())),
        groups: c.map(|c| dict(c.groups)),
        width_per_group: c.map(|c| dict(c.width_per_group())),
        settings,
        in_channels: dict(m.in_channels()),
        num_classes: dict(m.num_classes()),
        input_size: from(
            m.input_size.map(|(h, w)| [h, w]),
            flags.input_size.is_some(),
            sc.input_size.is_some(),
            if fixed { "state dict" } else { "default" },
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
    if let (Some(stem), Some(blocks), Some(groups), Some(wpg)) =
        (&i.stem, &i.blocks, &i.groups, &i.width_per_group)
    {
        row(&mut s, "stem", stem.value.clone(), stem.source);
        row(
            &mut s,
            "blocks",
            format!("{:?}", blocks.value),
            blocks.source,
        );
        row(
            &mut s,
            "groups",
            format!("{} x {} (width per group)", groups.value, wpg.value),
            groups.source,
        );
    }
    for st in &i.settings {
        row(&mut s, &st.name, st.value.clone(), &st.source.to_string());
    }
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
