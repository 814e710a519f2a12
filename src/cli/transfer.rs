//! `semcon transfer`: fine-tunes each checkpoint on one target dataset the
//! same way (same seed, same data order, same optimiser; the semantic
//! continuity paper's Table 3, §4.6) and prints one row per model: target
//! test accuracy, and with `--eval` the fine-tuned model's DS under the
//! colour perturbations and its PGD accuracy. The fine-tuned checkpoints
//! are kept in `--out-dir`.

use super::args::{parse_frac, parse_size, DataArgs, Format};
use super::train::{
    fit_like, sidecar_for, test_accuracy, train_and_save, FineTune, FineTuneArgs, OptimArgs,
};
use crate::data::Split;
use crate::eval;
use crate::metrics::pgd::PgdConfig;
use crate::perturb::Kind;
use crate::train::init::Freeze;
use crate::train::{TrainConfig, Variant};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// Checkpoints to fine-tune (repeatable); each is fine-tuned the same way.
    #[arg(long = "checkpoint", short = 'c', required = true)]
    pub checkpoints: Vec<PathBuf>,
    /// The target dataset: its train split is fine-tuned on, its test split
    /// measured (both required).
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub tune: FineTuneArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Passes over the target's training data.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Images per step (at least 2, for BatchNorm).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Where the fine-tuned checkpoints go (NAME.safetensors + NAME.json per model).
    #[arg(long, default_value = "transfer")]
    pub out_dir: PathBuf,
    /// Also measure each fine-tuned model on the target's test split: mean
    /// DS and accuracy over the colour perturbations (every level) and PGD accuracy.
    #[arg(long)]
    pub eval: bool,
    /// PGD eps for --eval.
    #[arg(long, default_value = "8/255", value_parser = parse_frac)]
    pub pgd_eps: f32,
    /// PGD iterations for --eval (step 2/255).
    #[arg(long, default_value_t = 10)]
    pub pgd_iters: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// table or json.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// One fine-tuned model.
#[derive(Debug, Serialize)]
pub struct Row {
    pub model: String,
    pub checkpoint: String,
    pub fine_tuned: String,
    pub head_replaced: bool,
    pub epochs: usize,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<Extra>,
}

/// `--eval`'s numbers of a fine-tuned model on the target's test split.
#[derive(Debug, Serialize)]
pub struct Extra {
    /// Mean over the colour perturbations and their levels.
    pub colour_accuracy: f64,
    pub colour_ds_mean: f64,
    pub pgd_eps: f64,
    pub pgd_accuracy: f64,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    dataset: String,
    train_samples: usize,
    test_samples: usize,
    freeze: Freeze,
    config: &'a TrainConfig,
    rows: Vec<Row>,
}

pub fn run(a: &TransferArgs) -> Result<()> {
    if a.batch < 2 {
        bail!("--batch must be at least 2 (BatchNorm)");
    }
    if a.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if a.data.dataset.is_none() {
        bail!("--dataset is required: the target dataset to fine-tune on");
    }
    if !a.out_dir.is_dir() {
        std::fs::create_dir_all(&a.out_dir)
            .with_context(|| format!("--out-dir {}: cannot create it", a.out_dir.display()))?;
    }
    let mut names: Vec<String> = Vec::new();
    for c in &a.checkpoints {
        let name = c
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if names.contains(&name) {
            bail!("two checkpoints are named {name}: their fine-tuned copies in --out-dir would overwrite each other");
        }
        names.push(name);
    }
    let freeze = a.tune.freeze.unwrap_or(Freeze::None);
    let optim = a.optim.config()?;
    let device = crate::device::select_arg(a.device.as_deref())?;
    let choice = a.data.choice()?;
    let load = |split| {
        crate::session::DataChoice {
            split: Some(split),
            ..choice.clone()
        }
        .load(None)
    };
    let raw = load(Split::Train).context("loading the target's train split")?;
    let raw_test = load(Split::Test).context("loading the target's test split")?;
    if super::train::contains_training_images(&raw_test, &raw) {
        eprintln!(
            "notice: {} has no separate test split (its test images are the training images): the test accuracy below is on images fine-tuned on",
            raw.name
        );
    }
    let size = a.tune.input_size.as_deref().map(parse_size).transpose()?;
    let cfg = TrainConfig {
        variant: Variant::Standard,
        alpha: 0.0,
        epochs: a.epochs,
        batch: a.batch,
        optim,
        seed: a.data.seed,
        pgd: PgdConfig {
            eps: a.pgd_eps,
            step: 2.0 / 255.0,
            iters: a.pgd_iters,
            random_start: false,
            seed: a.data.seed,
        },
    };
    let mut rows = Vec::new();
    for (i, (ckpt, name)) in a.checkpoints.iter().zip(&names).enumerate() {
        eprintln!("[{}/{}] {name}", i + 1, a.checkpoints.len());
        let job = FineTune {
            init: ckpt,
            tune: &a.tune,
            seed: a.data.seed,
        };
        let (mut tr, report, set) = job.start(&raw, size, &device)?;
        eprintln!("  {}", report.head_line());
        let test = fit_like(&raw_test, &set, a.tune.grayscale)?;
        let out = a.out_dir.join(format!("{name}.safetensors"));
        let mut sidecar = sidecar_for(&tr, &set, &cfg, Some(&report), choice.preprocess, &device);
        let history = train_and_save(&mut tr, &set, &cfg, &out, &mut sidecar, name)?;
        let acc = test_accuracy(&tr, &out, &test)?;
        let extra = if a.eval {
            let m = tr.model(out.clone())?;
            let t = eval::images_for(&m, &test)?;
            let c = eval::clean(&m, &t, 256, &mut |_, _| true)?.expect("never cancelled");
            let (mut accs, mut dss) = (Vec::new(), Vec::new());
            for kind in Kind::COLOUR {
                for level in 1..=kind.levels() {
                    let r = eval::perturbation(
                        &m,
                        &t,
                        &c,
                        kind,
                        level,
                        a.data.seed,
                        256,
                        &mut |_, _| true,
                    )?
                    .expect("never cancelled");
                    accs.push(r.accuracy);
                    dss.push(r.ds_mean);
                }
            }
            let p = eval::pgd_accuracy(&m, &t, &cfg.pgd, 256, &mut |_, _| true)?
                .expect("never cancelled");
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            Some(Extra {
                colour_accuracy: mean(&accs),
                colour_ds_mean: mean(&dss),
                pgd_eps: cfg.pgd.eps as f64,
                pgd_accuracy: p.accuracy,
            })
        } else {
            None
        };
        let last = history.last().map(|h| h.accuracy).unwrap_or(0.0);
        sidecar.metrics = Some(serde_json::json!({
            "train": history.last(),
            "test": { "dataset": test.name, "samples": test.len(), "accuracy": acc },
            "transfer_eval": extra,
        }));
        tr.save(&out, &sidecar)?;
        eprintln!("  test accuracy {:.2}% -> {}", 100.0 * acc, out.display());
        rows.push(Row {
            model: name.clone(),
            checkpoint: ckpt.display().to_string(),
            fine_tuned: out.display().to_string(),
            head_replaced: report.head_replaced,
            epochs: a.epochs,
            train_accuracy: last,
            test_accuracy: acc,
            eval: extra,
        });
    }
    let report = Report {
        dataset: raw.name.clone(),
        train_samples: raw.len(),
        test_samples: raw_test.len(),
        freeze,
        config: &cfg,
        rows,
    };
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", table(&report)),
    }
    Ok(())
}

fn table(r: &Report) -> String {
    let mode = match r.freeze {
        Freeze::None => "full fine-tuning",
        Freeze::Backbone => "linear probe",
    };
    let mut s = format!(
        "transfer to {} ({mode}, {} epochs, {:?} lr {}; {} train / {} test images)\n",
        r.dataset,
        r.config.epochs,
        r.config.optim.kind,
        r.config.optim.lr,
        r.train_samples,
        r.test_samples
    )
    .to_lowercase();
    let w = r
        .rows
        .iter()
        .map(|x| x.model.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let extra = r.rows.iter().any(|x| x.eval.is_some());
    s += &format!("{:<w$}  {:>9}  {:>8}", "model", "test acc", "head");
    if extra {
        s += &format!(
            "  {:>10}  {:>9}  {:>8}",
            "colour acc", "colour DS", "PGD acc"
        );
    }
    s += "\n";
    for x in &r.rows {
        s += &format!(
            "{:<w$}  {:>8.2}%  {:>8}",
            x.model,
            100.0 * x.test_accuracy,
            if x.head_replaced { "new" } else { "kept" }
        );
        if let Some(e) = &x.eval {
            s += &format!(
                "  {:>9.2}%  {:>9.4}  {:>7.2}%",
                100.0 * e.colour_accuracy,
                e.colour_ds_mean,
                100.0 * e.pgd_accuracy
            );
        }
        s += "\n";
    }
    s
}
