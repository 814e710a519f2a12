//! `semcon kstar`: the k* distribution of any features (.npz from `semcon
//! features`, or .npy with labels), as a table or JSON.

use super::common::check_out;
use crate::data::npyz::save_npy;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct KstarArgs {
    /// Features: .npz with arrays `features` and `labels`, or a float32/float64 .npy.
    #[arg(long)]
    pub features: PathBuf,
    /// Integer labels (.npy); required with a .npy features file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// euclidean, cityblock, chebyshev or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Write the per-sample k* integers (int64 .npy).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Draw the per-class k* distributions sorted by skewness (the k*
    /// paper's Figure 4, left) into this PNG; with --layer all, one PNG per
    /// layer (FILE-LAYER.png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// json or table.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Layer: with an .npz from `semcon features --layer all`, the layer to
    /// analyse, or `all` for every layer of the file (one report each);
    /// otherwise the name recorded in the report [default: the file's first
    /// `layer`, else none].
    #[arg(long)]
    pub layer: Option<String>,
    /// Class names, comma separated [default: the `class_names` array of an
    /// .npz from `semcon features`, else the label numbers].
    #[arg(long, value_delimiter = ',')]
    pub class_names: Option<Vec<String>>,
    /// Pattern A (fractured) when the skew is above this.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub fractured_above: f64,
    /// Pattern C (clustered) when the skew is below this.
    #[arg(long, default_value_t = -0.5, allow_negative_numbers = true)]
    pub clustered_below: f64,
    /// auto, cpu, cuda or cuda:N [default: auto: the GPU when this build has
    /// CUDA and one answers, else the CPU].
    #[arg(long)]
    pub device: Option<String>,
    /// Benchmarks: search N more times after the first and report the best
    /// time on stderr (the first run warms up the device).
    #[arg(long, default_value_t = 0, hide_short_help = true)]
    pub repeat: usize,
}

pub fn run(a: &KstarArgs) -> Result<()> {
    use crate::metrics::kstar;
    let metric: kstar::Metric = a.metric.parse()?;
    let json = match a.format.as_str() {
        "json" => true,
        "table" => false,
        f => bail!("invalid --format '{f}' (expected json or table)"),
    };
    if let Some(out) = &a.out {
        check_out(out, &["npy"])?;
    }
    if let Some(p) = &a.plot {
        check_out(p, &["png"])?;
    }
    let device = crate::device::select_arg(a.device.as_deref())?;
    // The layers to analyse: every one of a `--layer all` file with `all`,
    // the one named when the file holds it, else the file's `features`.
    let in_file = kstar::layers_in(&a.features)?;
    let layers: Vec<Option<String>> = match a.layer.as_deref() {
        Some("all") if in_file.len() > 1 => in_file.iter().cloned().map(Some).collect(),
        Some("all") => vec![None],
        Some(l) if in_file.len() > 1 && in_file.iter().any(|f| f == l) => vec![Some(l.to_string())],
        Some(l) if in_file.len() > 1 => bail!(
            "{} holds the layers {}; --layer {l} is none of them (or pass --layer all)",
            a.features.display(),
            in_file.join(", ")
        ),
        _ => vec![None],
    };
    if layers.len() > 1 && a.out.is_some() {
        bail!("--out writes the k* of one layer: pick one with --layer instead of all");
    }
    let mut reports = Vec::new();
    for at in &layers {
        let f = match at {
            Some(l) => kstar::read_features_at(&a.features, a.labels.as_deref(), l)?,
            None => kstar::read_features(&a.features, a.labels.as_deref())?,
        };
        reports.push(one(a, &f, metric, &device)?);
    }
    if let Some(p) = &a.plot {
        for r in &reports {
            let path = if reports.len() == 1 {
                p.clone()
            } else {
                let stem = p.file_stem().unwrap_or_default().to_string_lossy();
                p.with_file_name(format!("{stem}-{}.png", r.layer))
            };
            let title = format!(
                "k*/n per class, by skewness · {} · layer {} · {}",
                a.features.file_name().map_or_else(
                    || a.features.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                if r.layer.is_empty() { "-" } else { &r.layer },
                r.metric
            );
            crate::tui::export::kstar_violins(r, &title, &path)?;
            eprintln!("wrote {}", path.display());
        }
    }
    if json {
        if reports.len() == 1 {
            println!("{}", serde_json::to_string_pretty(&reports[0])?);
        } else {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
    } else {
        for r in &reports {
            print!("{}", r.table());
        }
    }
    Ok(())
}

/// The k* report of one feature array (and `--out`).
fn one(
    a: &KstarArgs,
    f: &crate::metrics::kstar::FeatureFile,
    metric: crate::metrics::kstar::Metric,
    device: &candle_core::Device,
) -> Result<crate::metrics::kstar::KstarReport> {
    use crate::metrics::kstar;
    let device = device.clone();
    let class_names = a.class_names.clone().or_else(|| f.class_names.clone());
    if let Some(names) = &class_names {
        // Every label needs a name (the highest label may be absent from a subset).
        let k = f.labels.iter().max().map_or(0, |&m| m as usize + 1);
        if names.len() < k {
            bail!(
                "{} class names given but the labels go up to {} ({k} classes)",
                names.len(),
                k - 1
            );
        }
    }
    let t = std::time::Instant::now();
    let k = f.kstar(metric, &device)?;
    let mut secs = t.elapsed().as_secs_f64();
    let mut how = String::new();
    if a.repeat > 0 {
        secs = f64::INFINITY;
        for _ in 0..a.repeat {
            let t = std::time::Instant::now();
            f.kstar(metric, &device)?;
            secs = secs.min(t.elapsed().as_secs_f64());
        }
        how = format!(" (best of {} after a warm-up run)", a.repeat);
    }
    // The search alone (no file reading or device start-up), for benchmarks.
    eprintln!(
        "k* search: {} samples x {} features, {}, {}: {secs:.3} s{how}",
        f.len(),
        f.dim,
        metric.name(),
        crate::device::describe(&device),
    );
    let th = kstar::Thresholds {
        fractured: a.fractured_above,
        clustered: a.clustered_below,
    };
    let names = class_names.unwrap_or_default();
    // With the model's predictions in the file, the report has accuracies.
    let correct: Option<Vec<bool>> = f
        .preds
        .as_ref()
        .map(|p| p.iter().zip(&f.labels).map(|(a, b)| a == b).collect());
    let mut report = kstar::summarize_with(&k, &f.labels, correct.as_deref(), &names, metric, th)?;
    report.layer = f
        .layer
        .clone()
        .filter(|_| {
            a.layer
                .as_deref()
                .is_none_or(|l| l == "all" || f.layer.as_deref() == Some(l))
        })
        .or_else(|| a.layer.clone().filter(|l| l != "all"))
        .or_else(|| f.layer.clone())
        .unwrap_or_default();
    if let Some(out) = &a.out {
        let v: Vec<i64> = k.iter().map(|&v| v as i64).collect();
        let t = Tensor::from_vec(v, k.len(), &Device::Cpu)?;
        save_npy(out, &t)?;
    }
    Ok(report)
}
