//! `semcon explain`: each model's explanation (saliency, Integrated
//! Gradients, GradCAM) of the same images, as an .npz for any analysis,
//! with a summary per model on stdout.

use super::args::{DataArgs, Format, ModelArgs};
use super::common::{check_out, input_with_labels};
use crate::data::npyz::{save_npz, NpyArray};
use crate::data::ImageSet;
use crate::explain::{self, Method, Options, Target};
use crate::figure::explain::{Column, Figure, Scale};
use crate::model::Tap;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

/// Images explained when neither --samples nor --input chooses them.
const DEFAULT_SAMPLES: usize = 8;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Float32 NCHW images in [0,1] (.npy) instead of a dataset (needs --labels).
    #[arg(long, conflicts_with = "dataset", requires = "labels")]
    pub input: Option<PathBuf>,
    /// Integer labels (.npy) for --input.
    #[arg(long, requires = "input")]
    pub labels: Option<PathBuf>,
    /// saliency (|d logit / d x|, Captum's Saliency), ig (Integrated
    /// Gradients from a black image, Gauss-Legendre nodes), gradcam (at the
    /// last convolutional stage, or --layer; upsampled by nearest neighbour)
    /// or lime (superpixels: a 4 px grid up to 64 px, scikit-image's SLIC
    /// beyond; the lime package's sampling, kernel and ridge regression,
    /// seeded by --seed).
    #[arg(long, value_enum)]
    pub method: Method,
    /// The class explained: label (the true one) or pred (each model's prediction).
    #[arg(long, value_enum, default_value_t = Target::Label)]
    pub target: Target,
    /// Integrated Gradients' steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// LIME's masked images per explanation (lime's num_samples).
    #[arg(long, default_value_t = 1000)]
    pub lime_samples: usize,
    /// GradCAM's layer: a ResNet's layer1..4, a ConvNeXt's or EfficientNet's
    /// stage1..N [default: the last].
    #[arg(long)]
    pub layer: Option<String>,
    /// Output: .npz (images, labels, models, method, target, attributions
    /// [models, N, C, H, W] (C = 1 for GradCAM), targets, preds, logit (the
    /// explained logit) [models, N], and delta (IG) or gradcam_coarse), or
    /// .png (the paper's figure: one row per sample, the image then each
    /// model's explanation, captions and a colour bar).
    #[arg(long)]
    pub out: PathBuf,
    /// The figure's heat-map scaling: row (one scale per sample, shared by
    /// the models) or image (each map to its own maximum).
    #[arg(long, value_enum, default_value_t = Scale::Row)]
    pub scale: Scale,
    /// The summary on stdout: table or json.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One model's line of the summary.
#[derive(Serialize)]
struct Summary {
    model: String,
    arch: String,
    /// Samples whose prediction is the label.
    correct: usize,
    /// GradCAM's layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<String>,
    /// Integrated Gradients' largest |convergence delta|.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_abs_delta: Option<f32>,
}

pub fn run(a: &ExplainArgs) -> Result<()> {
    check_out(&a.out, &["npz", "png"])?;
    let choice = a.model.choice()?;
    let device = choice.device()?;
    let models = choice.load_all(&device)?;
    let set = match (&a.input, &a.labels) {
        (Some(xp), Some(yp)) => {
            let set = input_with_labels(xp, yp)?;
            a.data.choice()?.subset(set)?
        }
        _ => {
            let set = crate::session::load_data(&a.data.choice()?, &models)?;
            if a.data.samples.is_none() && set.len() > DEFAULT_SAMPLES {
                eprintln!(
                    "notice: explaining the first {DEFAULT_SAMPLES} of {} images (--samples N chooses a seeded subset)",
                    set.len()
                );
                set.select(&(0..DEFAULT_SAMPLES).collect::<Vec<_>>())
            } else {
                set
            }
        }
    };
    if set.is_empty() {
        bail!("no images to explain");
    }
    let opts = Options {
        lime: explain::lime::LimeConfig {
            samples: a.lime_samples,
            seed: a.data.seed,
            ..Default::default()
        },
        steps: a.steps,
        layer: match &a.layer {
            Some(l) => Some(l.parse::<Tap>()?),
            None => None,
        },
    };
    if a.method != Method::Gradcam && a.layer.is_some() {
        bail!("--layer is GradCAM's (--method gradcam)");
    }
    let x = set.batch(0, set.len(), &device)?;
    let mut runs = Vec::new();
    for m in &models {
        if let Some(t) = opts.layer {
            m.check_tap(t)?;
        }
        let preds = crate::metrics::accuracy::predictions(&m.logits(&x)?)?;
        let targets = explain::targets(m, a.target, &set.labels, &preds)?;
        let e = explain::explain(m, &x, &targets, a.method, &opts)?;
        runs.push(e);
    }
    if a.out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        figure(a, &set, &models, &runs)?;
    } else {
        write(a, &set, &models, &runs)?;
    }
    let rows: Vec<Summary> = models
        .iter()
        .zip(&runs)
        .map(|(m, e)| Summary {
            model: m.name.clone(),
            arch: m.arch_name(),
            correct: e
                .preds
                .iter()
                .zip(&set.labels)
                .filter(|(p, l)| p == l)
                .count(),
            layer: e.layer.map(|t| t.to_string()),
            max_abs_delta: e
                .delta
                .as_ref()
                .map(|d| d.iter().fold(0f32, |m, v| m.max(v.abs()))),
        })
        .collect();
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "method": a.method,
                "target": a.target,
                "samples": set.len(),
                "out": a.out.display().to_string(),
                "models": rows,
            }))?
        ),
        Format::Table => {
            println!(
                "{} of {} images (the logit of the {}) -> {}",
                a.method.name(),
                set.len(),
                match a.target {
                    Target::Label => "true label",
                    Target::Pred => "prediction",
                },
                a.out.display()
            );
            for r in &rows {
                let mut line = format!(
                    "{:<20} {:<16} correct {}/{}",
                    r.model,
                    r.arch,
                    r.correct,
                    set.len()
                );
                if let Some(l) = &r.layer {
                    line += &format!("  layer {l}");
                }
                if let Some(d) = r.max_abs_delta {
                    line += &format!("  max |IG delta| {d:.2e}");
                }
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// The .npz: every model's arrays stacked along a first axis of models.
fn write(
    a: &ExplainArgs,
    set: &ImageSet,
    models: &[crate::model::Model],
    runs: &[explain::Explanation],
) -> Result<()> {
    let n = set.len();
    let stack = |f: &dyn Fn(&explain::Explanation) -> Result<Tensor>| -> Result<Tensor> {
        let parts = runs.iter().map(f).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&parts, 0)?)
    };
    let ints = |v: &[u32]| {
        Tensor::from_vec(
            v.iter().map(|&x| x as i64).collect::<Vec<_>>(),
            v.len(),
            &Device::Cpu,
        )
    };
    let images = set.batch(0, n, &Device::Cpu)?.to_dtype(DType::F32)?;
    let labels = ints(&set.labels)?;
    let attributions = stack(&|e| Ok(e.attr.clone()))?;
    let targets = stack(&|e| Ok(ints(&e.targets)?))?;
    let preds = stack(&|e| Ok(ints(&e.preds)?))?;
    let logit = stack(&|e| Ok(Tensor::new(e.logit.as_slice(), &Device::Cpu)?))?;
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let method = vec![a.method.name().to_string()];
    let target = vec![match a.target {
        Target::Label => "label".to_string(),
        Target::Pred => "pred".to_string(),
    }];
    let mut arrays = vec![
        ("images", NpyArray::Tensor(&images)),
        ("labels", NpyArray::Tensor(&labels)),
        ("models", NpyArray::Strings(&names)),
        ("method", NpyArray::Strings(&method)),
        ("target", NpyArray::Strings(&target)),
        ("attributions", NpyArray::Tensor(&attributions)),
        ("targets", NpyArray::Tensor(&targets)),
        ("preds", NpyArray::Tensor(&preds)),
        ("logit", NpyArray::Tensor(&logit)),
    ];
    let delta;
    let coarse;
    let layers: Vec<String>;
    match a.method {
        Method::Ig => {
            delta = stack(&|e| {
                Ok(Tensor::new(
                    e.delta.as_deref().unwrap_or_default(),
                    &Device::Cpu,
                )?)
            })?;
            arrays.push(("delta", NpyArray::Tensor(&delta)));
        }
        Method::Gradcam => {
            // each model's own map size; stacked when they agree
            let sizes: Vec<&[usize]> = runs
                .iter()
                .filter_map(|e| e.coarse.as_ref().map(|c| c.dims()))
                .collect();
            if sizes.windows(2).all(|w| w[0] == w[1]) {
                coarse = stack(&|e| Ok(e.coarse.clone().expect("GradCAM keeps its map")))?;
                arrays.push(("gradcam_coarse", NpyArray::Tensor(&coarse)));
            }
            layers = runs
                .iter()
                .map(|e| e.layer.map(|t| t.to_string()).unwrap_or_default())
                .collect();
            arrays.push(("layer", NpyArray::Strings(&layers)));
        }
        Method::Saliency | Method::Lime => {}
    }
    save_npz(&a.out, &arrays)?;
    Ok(())
}

/// The PNG figure: per model and sample its [`explain::heat_maps`].
fn figure(
    a: &ExplainArgs,
    set: &ImageSet,
    models: &[crate::model::Model],
    runs: &[explain::Explanation],
) -> Result<()> {
    let (h, w) = (set.height, set.width);
    let maps: Vec<Vec<Vec<f32>>> = runs
        .iter()
        .map(|e| Ok(explain::heat_maps(&e.attr, a.method)?))
        .collect::<Result<_>>()?;
    let columns: Vec<Column> = models
        .iter()
        .zip(runs)
        .zip(&maps)
        .map(|((m, e), maps)| Column {
            name: &m.name,
            maps,
            preds: &e.preds,
        })
        .collect();
    let names = models[0]
        .class_names
        .clone()
        .unwrap_or_else(|| set.class_names.clone());
    let title = format!(
        "{} of the {}",
        a.method.title(),
        match a.target {
            Target::Label => "true label",
            Target::Pred => "prediction",
        }
    );
    let canvas = crate::figure::explain::draw(
        &Figure {
            images: &set.data.to_f32(),
            channels: set.channels,
            height: h,
            width: w,
            labels: &set.labels,
            class_names: &names,
            title: &title,
            scale: a.scale,
            palette: crate::figure::Palette::of(a.method),
        },
        &columns,
    );
    crate::figure::save_png(&canvas, &a.out)?;
    Ok(())
}
