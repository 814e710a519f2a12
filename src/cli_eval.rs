//! `semcon eval` and `semcon attack`: headless reports over [`crate::eval`].

use crate::cli::{check_out, load_one_model, read_input_set, DataArgs, ModelArgs};
use crate::data::ImageSet;
use crate::eval::{self, PerturbRow, PgdRow};
use crate::metrics::kstar::{KstarReport, Metric};
use crate::metrics::pgd::{self, PgdConfig};
use crate::model::{self, Model, Tap};
use crate::perturb;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
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

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Perturbations: NAME or NAME:LEVELS (e.g. hue:1,2 or hue:1-3), or a group:
    /// colour (Table 1), probes (channel-shift, center-shuffle, puzzle), all
    /// (colour + probes), kstar (noise, rotate, crop-resize); repeatable,
    /// or joined with +. Default: all; none for no perturbation.
    #[arg(long)]
    pub perturb: Vec<String>,
    /// PGD eps values (comma separated, e.g. 2/255,8/255); none by default.
    #[arg(long, value_delimiter = ',', value_parser = parse_frac)]
    pub pgd: Vec<f32>,
    /// PGD step size.
    #[arg(long, default_value = "2/255", value_parser = parse_frac)]
    pub pgd_step: f32,
    /// PGD iterations.
    #[arg(long, default_value_t = 10)]
    pub pgd_iters: usize,
    /// Start PGD from uniform noise in the eps ball (seeded by --seed + sample index).
    #[arg(long)]
    pub random_start: bool,
    /// Also compute the k* distribution.
    #[arg(long)]
    pub kstar: bool,
    /// Layer for k*: logits, penultimate, layer1..layer4.
    #[arg(long, default_value = "logits")]
    pub layer: String,
    /// Distance for k*: euclidean, cityblock, chebyshev, cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// A second dataset for the distribution-shift accuracy (e.g. builtin:fashion-mnist:colour).
    #[arg(long)]
    pub shift_dataset: Option<String>,
    /// table (readable) or json (README: eval JSON).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Images per forward pass (a device out of memory halves it and retries).
    #[arg(long, default_value_t = 250, value_parser = crate::cli::parse_batch)]
    pub batch: usize,
    /// Write the JSON report here as well (.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The JSON report (keys documented in README).
#[derive(Serialize, Debug)]
pub struct Report {
    pub samples: usize,
    pub dataset: String,
    pub device: String,
    pub models: Vec<ModelReport>,
}

#[derive(Serialize, Debug)]
pub struct ModelReport {
    pub checkpoint: String,
    pub name: String,
    pub arch: String,
    pub clean_accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift_dataset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift_accuracy: Option<f64>,
    pub perturbations: Vec<PerturbRow>,
    pub pgd: Vec<PgdRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kstar: Option<KstarReport>,
}

/// Loads every model named (or the shipped ones).
pub fn load_models(args: &ModelArgs, device: &Device) -> Result<Vec<Model>> {
    use crate::tui::setup;
    let paths = if args.checkpoints.is_empty() {
        setup::default_checkpoints(&setup::checkpoint_dirs())?
    } else {
        args.checkpoints.clone()
    };
    let opts = args.options()?;
    let models = paths
        .iter()
        .map(|p| model::load_named(p, &opts, device))
        .collect::<Result<Vec<_>>>()?;
    for n in models.iter().filter_map(Model::norm_notice) {
        eprintln!("notice: {n}");
    }
    Ok(models)
}

/// Loads the dataset for `models` (default chosen from them) and checks labels.
pub fn load_data(data: &DataArgs, models: &[Model]) -> Result<ImageSet> {
    let mut d = data.clone();
    if d.dataset.is_none() {
        d.dataset = Some(crate::tui::setup::default_dataset(models).to_string());
    }
    let set = d.load(models.first().and_then(|m| m.input_size))?;
    check_labels(&set, models)?;
    if let Some(n) = eval::gray_notice(&set, models) {
        eprintln!("notice: {n}");
    }
    Ok(set)
}

/// Checks that the labels of `set` fit every model, naming the checkpoint.
fn check_labels(set: &ImageSet, models: &[Model]) -> Result<()> {
    for m in models {
        set.check_labels(m.num_classes())
            .with_context(|| format!("checkpoint {}", m.path.display()))?;
    }
    Ok(())
}

fn progress(total: u64, msg: String) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>28} [{bar:30}] {pos}/{len} {elapsed} (eta {eta})",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

pub fn cmd_eval(a: &EvalArgs) -> Result<()> {
    if let Some(out) = &a.out {
        check_out(out, &["json"])?;
    }
    let device = a.model.device()?;
    let models = load_models(&a.model, &device)?;
    let set = load_data(&a.data, &models)?;
    let mut selection = Vec::new();
    let specs = if a.perturb.is_empty() {
        vec!["all".to_string()]
    } else {
        a.perturb.clone()
    };
    for s in &specs {
        if s != "none" {
            selection.extend(perturb::parse_selection(s)?);
        }
    }
    let tap: Tap = a.layer.parse()?;
    let metric: Metric = a.metric.parse()?;
    let shift = match &a.shift_dataset {
        Some(d) => Some(
            DataArgs {
                dataset: Some(d.clone()),
                ..a.data.clone()
            }
            .load(models[0].input_size)?,
        ),
        None => None,
    };
    if let Some(s) = &shift {
        check_labels(s, &models)?;
    }
    let mut reports = Vec::new();
    for m in &models {
        let mset = eval::images_for(m, &set)?;
        let n = mset.len() as u64;
        let jobs =
            1 + selection.len() + a.pgd.len() + usize::from(a.kstar) + usize::from(shift.is_some());
        let pb = progress(n * jobs as u64, m.name.clone());
        let mut base = 0u64;
        let mut tick = |done: usize, _total: usize| {
            pb.set_position(base + done as u64);
            true
        };
        let clean = eval::clean(m, &mset, a.batch, &mut tick)?.expect("never cancelled");
        base += n;
        let shift_accuracy = match &shift {
            Some(s) => {
                let s = eval::images_for(m, s)?;
                let c = eval::clean(m, &s, a.batch, &mut |d, _| {
                    pb.set_position(base + d as u64);
                    true
                })?
                .expect("never cancelled");
                base += n;
                Some(c.accuracy)
            }
            None => None,
        };
        let mut rows = Vec::new();
        for &(kind, level) in &selection {
            let row = eval::perturbation(
                m,
                &mset,
                &clean,
                kind,
                level,
                a.data.seed,
                a.batch,
                &mut |d, _| {
                    pb.set_position(base + d as u64);
                    true
                },
            )?
            .expect("never cancelled");
            base += n;
            rows.push(row);
        }
        let mut pgd_rows = Vec::new();
        for &eps in &a.pgd {
            let cfg = PgdConfig {
                eps,
                step: a.pgd_step,
                iters: a.pgd_iters,
                random_start: a.random_start,
                seed: a.data.seed,
            };
            let r = eval::pgd_accuracy(m, &mset, &cfg, a.batch, &mut |d, _| {
                pb.set_position(base + d as u64);
                true
            })?
            .expect("never cancelled");
            base += n;
            pgd_rows.push(r);
        }
        let kstar = if a.kstar {
            let f = eval::features(m, &mset, &mset.data, tap, a.batch, &mut |d, _| {
                pb.set_position(base + d as u64);
                true
            })?
            .expect("never cancelled");
            Some(eval::kstar(
                &f,
                &mset.labels,
                &crate::engine::class_names(m, &mset),
                tap,
                metric,
                &device,
            )?)
        } else {
            None
        };
        pb.finish_and_clear();
        reports.push(ModelReport {
            checkpoint: m.path.display().to_string(),
            name: m.name.clone(),
            arch: m.config().arch_name(),
            clean_accuracy: clean.accuracy,
            shift_dataset: shift.as_ref().map(|s| s.name.clone()),
            shift_accuracy,
            perturbations: rows,
            pgd: pgd_rows,
            kstar,
        });
    }
    let report = Report {
        samples: set.len(),
        dataset: set.name.clone(),
        device: crate::device::describe(&device),
        models: reports,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &a.out {
        std::fs::write(out, &json).with_context(|| format!("cannot write {}", out.display()))?;
    }
    match a.format {
        Format::Json => println!("{json}"),
        Format::Table => print!("{}", table(&report)),
    }
    Ok(())
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// Human-readable report.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dataset {} ({} samples), {}",
        r.dataset, r.samples, r.device
    );
    for m in &r.models {
        let _ = writeln!(s, "\n== {} ({}, {})", m.name, m.arch, m.checkpoint);
        let _ = write!(s, "clean accuracy {}", pct(m.clean_accuracy));
        if let (Some(d), Some(acc)) = (&m.shift_dataset, m.shift_accuracy) {
            let _ = write!(s, "   shift accuracy {} on {d}", pct(acc));
        }
        let _ = writeln!(s);
        if !m.perturbations.is_empty() {
            let _ = writeln!(
                s,
                "{:<16} {:>5} {:>22} {:>9} {:>11} {:>11} {:>8}",
                "perturbation", "level", "param", "accuracy", "DS mean", "DS median", "discont"
            );
            for p in &m.perturbations {
                let _ = writeln!(
                    s,
                    "{:<16} {:>5} {:>22} {:>9} {:>11.4} {:>11.4} {:>8}",
                    p.name,
                    p.level,
                    p.label,
                    pct(p.accuracy),
                    p.ds_mean,
                    p.ds_median,
                    pct(p.discontinuity_rate)
                );
            }
        }
        for p in &m.pgd {
            let _ = writeln!(
                s,
                "PGD eps {:.4} ({:.1}/255) step {:.4} x{}: adversarial accuracy {}",
                p.eps,
                p.eps * 255.0,
                p.step,
                p.iters,
                pct(p.accuracy)
            );
        }
        if let Some(k) = &m.kstar {
            s.push_str(&k.table());
        }
    }
    s
}

#[derive(Args, Debug)]
pub struct AttackArgs {
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
    /// L-infinity radius (pixel values in [0,1]).
    #[arg(long, default_value = "8/255", value_parser = parse_frac)]
    pub eps: f32,
    /// Step size.
    #[arg(long, default_value = "2/255", value_parser = parse_frac)]
    pub step: f32,
    /// Iterations.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Start from uniform noise in the eps ball (seeded by --seed + sample index).
    #[arg(long)]
    pub random_start: bool,
    /// Output .npy with the adversarial images (float32 NCHW).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Images per forward pass (a device out of memory halves it and retries).
    #[arg(long, default_value_t = 250, value_parser = crate::cli::parse_batch)]
    pub batch: usize,
}

pub fn cmd_attack(a: &AttackArgs) -> Result<()> {
    if let Some(out) = &a.out {
        check_out(out, &["npy"])?;
    }
    let device = a.model.device()?;
    let m = load_one_model(&a.model, &device)?;
    let (x, y) = match (&a.input, &a.labels) {
        (Some(xp), Some(yp)) => {
            let mut set = read_input_set(xp)?;
            let yt = crate::data::npyz::read_npy_file(yp)?;
            let y = crate::data::npz::labels_from(&yt, yp)?;
            if y.len() != set.len() {
                bail!(
                    "{} has {} labels but {} has {} images",
                    yp.display(),
                    y.len(),
                    xp.display(),
                    set.len()
                );
            }
            set.labels = y;
            let set = a.data.subset(set)?;
            (set.batch(0, set.len(), &Device::Cpu)?, set.labels)
        }
        _ => {
            let set = load_data(&a.data, std::slice::from_ref(&m))?;
            let set = eval::images_for(&m, &set)?;
            (set.batch(0, set.len(), &Device::Cpu)?, set.labels.clone())
        }
    };
    if let Some((i, l)) = y
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= m.num_classes())
    {
        bail!(
            "label {l} of sample {i} does not fit model {} with {} classes",
            m.name,
            m.num_classes()
        );
    }
    let cfg = PgdConfig {
        eps: a.eps,
        step: a.step,
        iters: a.iters,
        random_start: a.random_start,
        seed: a.data.seed,
    };
    let n = y.len();
    let pb = progress(
        n as u64,
        format!("PGD-{} eps {:.1}/255", a.iters, a.eps * 255.0),
    );
    // per sample: (clean prediction, adversarial prediction); x_adv per batch
    let mut advs = Vec::new();
    let preds = eval::in_batches(
        n,
        a.batch,
        |s, e| {
            let xb = x.narrow(0, s, e - s)?.to_device(&device)?;
            let yb = Tensor::from_slice(&y[s..e], e - s, &device)?;
            let c = PgdConfig {
                seed: cfg.seed.wrapping_add(s as u64),
                ..cfg
            };
            let out = pgd::pgd(&m, &xb, &yb, &c)?;
            let pc = crate::metrics::accuracy::predictions(&m.logits(&xb)?)?;
            let pa = crate::metrics::accuracy::predictions(&m.logits(&out.x_adv)?)?;
            advs.push(out.x_adv.to_device(&Device::Cpu)?);
            Ok(pc.into_iter().zip(pa).collect())
        },
        |_, done, _| {
            pb.set_position(done as u64);
            true
        },
    )?
    .unwrap_or_default();
    let clean_ok = preds.iter().zip(&y).filter(|((p, _), l)| p == *l).count();
    let adv_ok = preds.iter().zip(&y).filter(|((_, p), l)| p == *l).count();
    pb.finish_and_clear();
    println!(
        "clean accuracy {} adversarial accuracy {} ({} samples, eps {:.5}, step {:.5}, {} iterations{})",
        pct(clean_ok as f64 / n as f64),
        pct(adv_ok as f64 / n as f64),
        n,
        a.eps,
        a.step,
        a.iters,
        if a.random_start { ", random start" } else { "" }
    );
    if let Some(out) = &a.out {
        let adv = Tensor::cat(&advs, 0)?.to_dtype(DType::F32)?;
        adv.write_npy(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
