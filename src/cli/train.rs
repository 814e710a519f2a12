//! `semcon train`: the paper's four variants from scratch, or fine-tuning
//! from a checkpoint (`--init`, head kept or replaced, `--freeze`), with a
//! progress bar, checkpoints written atomically after every epoch, and a
//! sidecar recording how. `semcon transfer` runs the same fine-tuning
//! ([`fine_tune`]) for several checkpoints.

use super::args::{parse_frac, parse_size, DataArgs, Format};
use super::common::check_out;
use crate::data::preprocess::Preprocess;
use crate::data::{ImageSet, Split};
use crate::metrics::pgd::PgdConfig;
use crate::model::{checkpoint::Sidecar, ModelOptions, ResNetConfig, Stem};
use crate::session::DataChoice;
use crate::train::init::{fit_dataset, Freeze, HeadChoice, InitReport};
use crate::train::optim::{OptimConfig, OptimKind};
use crate::train::{self, EpochStats, TrainConfig, Trainer, Variant};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

/// The optimiser flags `train` and `transfer` share.
#[derive(Args, Debug, Clone)]
pub struct OptimArgs {
    /// sgd, adam or adamw (PyTorch's update rules).
    #[arg(long, value_enum, default_value_t = OptimKind::Adam)]
    pub optimizer: OptimKind,
    /// Learning rate (the paper fine-tunes ImageNet-sized models with Adam
    /// at 1e-5; small models on small sets need more steps or a larger rate).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay (added to the gradient for sgd/adam, decoupled for adamw).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
}

impl OptimArgs {
    /// The optimiser the flags ask for.
    pub fn config(&self) -> Result<OptimConfig> {
        let lr = self.lr;
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be a positive number (got {lr})");
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            bail!("--momentum must lie in [0, 1) (got {})", self.momentum);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be >= 0 (got {})", self.weight_decay);
        }
        Ok(OptimConfig {
            kind: self.optimizer,
            lr,
            momentum: if self.optimizer == OptimKind::Sgd {
                self.momentum
            } else {
                0.0
            },
            weight_decay: self.weight_decay,
        })
    }
}

/// How a checkpoint is fine-tuned and its data fitted (`train --init`, `transfer`).
#[derive(Args, Debug, Clone)]
pub struct FineTuneArgs {
    /// With --init (or for transfer): none (full fine-tuning: every weight
    /// learns, BatchNorm statistics update; the ResNet family) or backbone
    /// (linear probe, every family: only the head learns; the backbone stays
    /// bit-identical, BatchNorm in eval mode).
    #[arg(long, value_enum)]
    pub freeze: Option<Freeze>,
    /// The classifier head: auto (replaced when the dataset's class count
    /// differs, kept otherwise), keep, or replace.
    #[arg(long, value_enum)]
    pub head: Option<HeadChoice>,
    /// Train at HxW (or one number): the dataset's images are resized
    /// (antialiased bilinear) when their size differs. Needed when they differ
    /// from the size the --init model was trained at.
    #[arg(long)]
    pub input_size: Option<String>,
    /// Convert RGB images to gray (ITU-R 601-2 luma) for a model of 1 channel.
    #[arg(long)]
    pub grayscale: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// resnet18, resnet34 or resnet50 (torchvision's, parameter names included).
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// The network's first layers.
    #[arg(long, value_enum, default_value_t = Stem::Cifar)]
    pub stem: Stem,
    /// Stem width (64 = torchvision's full width).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// The paper's four models: standard (cross-entropy), continuity (+ alpha x
    /// DS to a colour-perturbed copy), adv (PGD adversarial training), or
    /// adv-continuity (both).
    #[arg(long, value_enum, default_value_t = Variant::Standard)]
    pub variant: Variant,
    /// Weight of the DS term (continuity variants).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Passes over the training data (the checkpoint is written after each).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Images per step (at least 2, for BatchNorm).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    #[command(flatten)]
    pub optim: OptimArgs,
    /// PGD for adversarial training.
    #[arg(long, default_value = "8/255", value_parser = parse_frac)]
    pub pgd_eps: f32,
    /// PGD step size for adversarial training.
    #[arg(long, default_value = "2/255", value_parser = parse_frac)]
    pub pgd_step: f32,
    /// PGD iterations for adversarial training.
    #[arg(long, default_value_t = 5)]
    pub pgd_iters: usize,
    /// Continue training this checkpoint (same architecture and classes).
    #[arg(long, conflicts_with = "init")]
    pub resume: Option<PathBuf>,
    /// Fine-tune this checkpoint on the dataset (any family semcon loads;
    /// ViT, ConvNeXt and EfficientNet as a linear probe, --freeze backbone;
    /// --arch, --stem and --width come from it).
    #[arg(long, conflicts_with_all = ["arch", "stem", "width"])]
    pub init: Option<PathBuf>,
    #[command(flatten)]
    pub tune: FineTuneArgs,
    /// Output checkpoint (.safetensors); a sidecar NAME.json is written next to it.
    #[arg(long)]
    pub out: PathBuf,
    /// Dataset evaluated after training for the sidecar's metrics (default: the
    /// test split of the training data).
    #[arg(long)]
    pub eval_dataset: Option<String>,
    /// auto, cpu, cuda or cuda:N [default: auto: the GPU when this build has
    /// CUDA and one answers, else the CPU].
    #[arg(long)]
    pub device: Option<String>,
    /// table, or json (then the sidecar is also printed at the end).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(a: &TrainArgs) -> Result<()> {
    check_out(&a.out, &["safetensors"])?;
    if a.width == 0 {
        bail!("--width must be at least 1");
    }
    if a.batch < 2 {
        bail!("--batch must be at least 2 (BatchNorm)");
    }
    if a.init.is_none() {
        for (given, flag) in [
            (a.tune.freeze.is_some(), "--freeze"),
            (a.tune.head.is_some(), "--head"),
            (a.tune.grayscale, "--grayscale"),
        ] {
            if given {
                bail!("{flag} applies to fine-tuning: add --init CHECKPOINT");
            }
        }
    }
    let optim = a.optim.config()?;
    let device = crate::device::select_arg(a.device.as_deref())?;
    let mut data = a.data.choice()?;
    if data.dataset.is_none() {
        bail!("--dataset is required for training (e.g. /usr/share/datasets/fashion-mnist:colour --split train)");
    }
    // Like torchvision's datasets (train=True), training reads the train split.
    let split = a.data.split.unwrap_or(Split::Train);
    data.split = Some(split);
    let raw = data.load(None)?;
    let size = a.tune.input_size.as_deref().map(parse_size).transpose()?;
    let pgd = PgdConfig {
        eps: a.pgd_eps,
        step: a.pgd_step,
        iters: a.pgd_iters,
        random_start: false,
        seed: a.data.seed,
    };
    let (mut tr, set, init) = match &a.init {
        Some(init) => {
            let job = FineTune {
                init,
                tune: &a.tune,
                seed: a.data.seed,
            };
            let (tr, report, set) = job.start(&raw, size, &device)?;
            eprintln!("{}", report.head_line());
            (tr, set, Some(report))
        }
        None => {
            let set = match size {
                Some((h, w)) if (h, w) != (raw.height, raw.width) => raw.resized(h, w),
                _ => raw,
            };
            let (mean, std) = train::channel_stats(&set);
            let config =
                ResNetConfig::named(&a.arch, a.stem, a.width, set.channels, set.num_classes())?;
            let mut tr = Trainer::new(config, mean, std, a.data.seed, &device)?;
            if let Some(r) = &a.resume {
                tr.resume(r)?;
            }
            (tr, set, None)
        }
    };
    let cfg = TrainConfig {
        variant: a.variant,
        alpha: a.alpha,
        epochs: a.epochs,
        batch: a.batch,
        optim,
        seed: a.data.seed,
        pgd,
    };
    let mut sidecar = sidecar_for(&tr, &set, &cfg, init.as_ref(), data.preprocess, &device);
    let history = train_and_save(&mut tr, &set, &cfg, &a.out, &mut sidecar, "epoch")?;
    // Final metrics on held-out data for the sidecar.
    let eval_spec = match &a.eval_dataset {
        Some(d) => Some(d.clone()),
        None if split == Split::Train => Some(data.dataset.clone().unwrap_or_default()),
        None => {
            eprintln!(
                "notice: trained on the test split; no held-out accuracy in the sidecar (--eval-dataset adds one)"
            );
            None
        }
    };
    let mut metrics = serde_json::json!({ "train": history.last() });
    let explicit_eval = a.eval_dataset.is_some();
    let test = match eval_spec {
        Some(spec) => {
            let test = DataChoice {
                dataset: Some(spec.clone()),
                split: Some(Split::Test),
                samples: None,
                ..a.data.choice()?
            }
            .load(None)
            .with_context(|| format!("loading evaluation data {spec}"))?;
            if !explicit_eval && contains_training_images(&test, &set) {
                eprintln!(
                    "notice: {spec} has no separate test split (its test images are the training \
                     images); no held-out accuracy in the sidecar (--eval-dataset adds one)"
                );
                None
            } else {
                Some(test)
            }
        }
        None => None,
    };
    if let Some(test) = test {
        let test = fit_like(&test, &set, a.tune.grayscale)?;
        let acc = test_accuracy(&tr, &a.out, &test)?;
        metrics["test"] =
            serde_json::json!({ "dataset": test.name, "samples": test.len(), "accuracy": acc });
        eprintln!(
            "test accuracy {:.2}% on {} ({} samples)",
            100.0 * acc,
            test.name,
            test.len()
        );
    }
    sidecar.metrics = Some(metrics);
    tr.save(&a.out, &sidecar)?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&sidecar)?);
    }
    Ok(())
}

/// One checkpoint to fine-tune, and how.
pub(super) struct FineTune<'a> {
    pub init: &'a Path,
    pub tune: &'a FineTuneArgs,
    pub seed: u64,
}

impl FineTune<'_> {
    /// The trainer from the checkpoint and the training set fitted to it
    /// (notices on stderr).
    pub fn start(
        &self,
        raw: &ImageSet,
        size: Option<(usize, usize)>,
        device: &candle_core::Device,
    ) -> Result<(Trainer, InitReport, ImageSet)> {
        let (tr, report) = Trainer::from_checkpoint(
            self.init,
            &ModelOptions::default(),
            raw.num_classes(),
            self.tune.head.unwrap_or(HeadChoice::Auto),
            self.tune.freeze.unwrap_or(Freeze::None),
            self.seed,
            device,
        )
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot fine-tune {}", self.init.display()))?;
        let sidecar = crate::model::checkpoint::read_sidecar(self.init)?.unwrap_or_default();
        let model_size = sidecar.input_size.map(|[h, w]| (h, w));
        if let Some(s) = tr.fixed_size() {
            let want = size.unwrap_or((raw.height, raw.width));
            if want != (s, s) {
                bail!(
                    "cannot fine-tune {}: a {} takes {s}x{s} images only (its position embedding), \
                     not {}x{}: pass --input-size {s}x{s} to resize the dataset's images",
                    self.init.display(),
                    tr.arch_name(),
                    want.0,
                    want.1
                );
            }
        }
        let (set, notes) =
            fit_dataset(raw, tr.in_channels(), model_size, size, self.tune.grayscale)?;
        for n in notes {
            eprintln!("notice: {n}");
        }
        Ok((tr, report, set))
    }
}

/// A test set brought to the training set's channels and size.
pub(super) fn fit_like(test: &ImageSet, train: &ImageSet, grayscale: bool) -> Result<ImageSet> {
    let size = Some((train.height, train.width));
    Ok(fit_dataset(test, train.channels, None, size, grayscale)?.0)
}

/// The sidecar of a trained or fine-tuned checkpoint (metrics filled later).
pub(super) fn sidecar_for(
    tr: &Trainer,
    set: &ImageSet,
    cfg: &TrainConfig,
    init: Option<&InitReport>,
    preprocess: Option<Preprocess>,
    device: &candle_core::Device,
) -> Sidecar {
    let command: Vec<String> = std::env::args().collect();
    let mut training = serde_json::json!({
        "command": command.join(" "),
        "config": cfg,
        "samples": set.len(),
        "device": crate::device::describe(device),
    });
    if let Some(r) = init {
        training["init"] = serde_json::json!(r);
    }
    // A described family's settings that its shapes may not give, carried over.
    let from = init
        .and_then(|r| crate::model::checkpoint::read_sidecar(Path::new(&r.checkpoint)).ok())
        .flatten()
        .unwrap_or_default();
    let resnet = tr.resnet().map(|(_, c)| c);
    Sidecar {
        arch: Some(tr.arch_name()),
        stem: resnet.map(|c| c.stem),
        width: resnet.map(|c| c.width),
        num_classes: Some(tr.num_classes()),
        num_heads: from.num_heads,
        bn_eps: from.bn_eps,
        stage_strides: from.stage_strides,
        mean: Some(tr.mean.clone()),
        std: Some(tr.std.clone()),
        input_size: Some([set.height, set.width]),
        resize_size: preprocess.map(|p| p.resize),
        crop_size: preprocess.map(|p| p.crop),
        interpolation: preprocess.map(|p| p.filter),
        class_names: Some(set.class_names.clone()),
        dataset: Some(set.name.clone()),
        variant: Some(cfg.variant.name().to_string()),
        training: Some(training),
        metrics: None,
    }
}

/// Trains with a progress bar (prefix `what`), saving `out` after every
/// epoch; an error says whether `out` holds the last completed epoch.
pub(super) fn train_and_save(
    tr: &mut Trainer,
    set: &ImageSet,
    cfg: &TrainConfig,
    out: &Path,
    sidecar: &mut Sidecar,
    what: &str,
) -> Result<Vec<EpochStats>> {
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {{msg}} {{elapsed}}<{{eta}}"
        ))
        .expect("template")
        .progress_chars("=> "),
    );
    let mut saved = false;
    let result = train::train(
        tr,
        set,
        cfg,
        &mut |epoch, step, steps, loss, acc| {
            pb.set_length(steps as u64);
            pb.set_prefix(format!("{epoch}/{}", cfg.epochs));
            pb.set_position(step as u64);
            pb.set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * acc));
        },
        &mut |tr, stats| {
            sidecar.metrics = Some(serde_json::json!({ "train": stats }));
            tr.save(out, sidecar)?;
            saved = true;
            // Not only on a terminal: logged and nohup runs see every epoch too.
            // The parts of the loss, where it has more than one.
            let parts = if cfg.variant.continuity() {
                format!(" (CE {:.4}, DS {:.4})", stats.ce, stats.ds)
            } else {
                String::new()
            };
            let line = format!(
                "{what} {}: loss {:.4}{parts} train accuracy {:.2}% -> saved {}",
                stats.epoch,
                stats.loss,
                100.0 * stats.accuracy,
                out.display()
            );
            if pb.is_hidden() {
                eprintln!("{line}");
            } else {
                pb.println(line);
            }
            Ok(())
        },
    );
    pb.finish_and_clear();
    result.map_err(|e| {
        let kept = if saved {
            format!("; {} holds the last completed epoch", out.display())
        } else {
            "; no checkpoint was written".to_string()
        };
        anyhow::anyhow!("{e}{kept}")
    })
}

/// Clean accuracy of the trainer's network (eval mode) on `test`.
pub(super) fn test_accuracy(tr: &Trainer, out: &Path, test: &ImageSet) -> Result<f64> {
    let m = tr.model(out.to_path_buf())?;
    let test = crate::eval::images_for(&m, test)?;
    let c = crate::eval::clean(&m, &test, 500, &mut |_, _| true)?.expect("never cancelled");
    Ok(c.accuracy)
}

/// Whether `test` holds the training images, i.e. the dataset has no
/// separate test split and "the test split of the training data" would be
/// the training data again: up to 64 training images spread over the set
/// are all found, bit for bit, among the test images.
pub(super) fn contains_training_images(
    test: &crate::data::ImageSet,
    train: &crate::data::ImageSet,
) -> bool {
    use std::collections::HashSet;
    use std::hash::{Hash, Hasher};
    let l = train.image_len();
    if l == 0 || test.image_len() != l || train.is_empty() {
        return false;
    }
    let key = |img: &[f32]| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        img.iter().for_each(|v| v.to_bits().hash(&mut h));
        h.finish()
    };
    let seen: HashSet<u64> = (0..test.len()).map(|i| key(&test.image(i))).collect();
    let n = train.len();
    let probes = n.min(64);
    (0..probes)
        .map(|i| i * n / probes)
        .all(|i| seen.contains(&key(&train.image(i))))
}
