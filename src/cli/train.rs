//! `semcon train`: the paper's four variants, with a progress bar, checkpoints
//! written atomically after every epoch, and a sidecar recording how.

use super::args::{parse_frac, DataArgs, Format};
use super::common::check_out;
use crate::data::Split;
use crate::metrics::pgd::PgdConfig;
use crate::model::{checkpoint::Sidecar, ResNetConfig, Stem};
use crate::session::DataChoice;
use crate::train::{self, TrainConfig, Trainer, Variant};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

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
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// PGD for adversarial training.
    #[arg(long, default_value = "8/255", value_parser = parse_frac)]
    pub pgd_eps: f32,
    /// PGD step size for adversarial training.
    #[arg(long, default_value = "2/255", value_parser = parse_frac)]
    pub pgd_step: f32,
    /// PGD iterations for adversarial training.
    #[arg(long, default_value_t = 5)]
    pub pgd_iters: usize,
    /// Start from this checkpoint (same architecture).
    #[arg(long)]
    pub resume: Option<PathBuf>,
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
    let device = crate::device::select_arg(a.device.as_deref())?;
    let mut data = a.data.choice();
    if data.dataset.is_none() {
        bail!("--dataset is required for training (e.g. /usr/share/datasets/fashion-mnist:colour --split train)");
    }
    // Like torchvision's datasets (train=True), training reads the train split.
    let split = a.data.split.unwrap_or(Split::Train);
    data.split = Some(split);
    let set = data.load(None)?;
    let (mean, std) = train::channel_stats(&set);
    let config = ResNetConfig::named(&a.arch, a.stem, a.width, set.channels, set.num_classes())?;
    let mut tr = Trainer::new(
        config.clone(),
        mean.clone(),
        std.clone(),
        a.data.seed,
        &device,
    )?;
    if let Some(r) = &a.resume {
        tr.resume(r)?;
    }
    let cfg = TrainConfig {
        variant: a.variant,
        alpha: a.alpha,
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        seed: a.data.seed,
        pgd: PgdConfig {
            eps: a.pgd_eps,
            step: a.pgd_step,
            iters: a.pgd_iters,
            random_start: false,
            seed: a.data.seed,
        },
    };
    let command: Vec<String> = std::env::args().collect();
    let mut sidecar = Sidecar {
        arch: Some(config.arch_name()),
        stem: Some(config.stem),
        width: Some(config.width),
        num_classes: Some(config.num_classes),
        mean: Some(mean),
        std: Some(std),
        input_size: Some([set.height, set.width]),
        class_names: Some(set.class_names.clone()),
        dataset: Some(set.name.clone()),
        variant: Some(a.variant.name().to_string()),
        training: Some(serde_json::json!({
            "command": command.join(" "),
            "config": &cfg,
            "samples": set.len(),
            "device": crate::device::describe(&device),
        })),
        metrics: None,
    };
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} {elapsed}<{eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    let mut saved = false;
    let result = train::train(
        &mut tr,
        &set,
        &cfg,
        &mut |epoch, step, steps, loss, acc| {
            pb.set_length(steps as u64);
            pb.set_prefix(format!("{epoch}/{}", cfg.epochs));
            pb.set_position(step as u64);
            pb.set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * acc));
        },
        &mut |tr, stats| {
            sidecar.metrics = Some(serde_json::json!({ "train": stats }));
            tr.save(&a.out, &sidecar)?;
            saved = true;
            // Not only on a terminal: logged and nohup runs see every epoch too.
            let line = format!(
                "epoch {}: loss {:.4} (CE {:.4}, DS {:.4}) train accuracy {:.2}% -> saved {}",
                stats.epoch,
                stats.loss,
                stats.ce,
                stats.ds,
                100.0 * stats.accuracy,
                a.out.display()
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
    let history = match result {
        Ok(h) => h,
        Err(e) => {
            let kept = if saved {
                format!("; {} holds the last completed epoch", a.out.display())
            } else {
                "; no checkpoint was written".to_string()
            };
            return Err(anyhow::anyhow!("{e}{kept}"));
        }
    };
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
                ..a.data.choice()
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
        let m = tr.model(a.out.clone())?;
        let test = crate::eval::images_for(&m, &test)?;
        let c = crate::eval::clean(&m, &test, 500, &mut |_, _| true)?.expect("never cancelled");
        metrics["test"] = serde_json::json!({ "dataset": test.name, "samples": test.len(), "accuracy": c.accuracy });
        eprintln!(
            "test accuracy {:.2}% on {} ({} samples)",
            100.0 * c.accuracy,
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

/// Whether `test` holds the training images, i.e. the dataset has no
/// separate test split and "the test split of the training data" would be
/// the training data again: up to 64 training images spread over the set
/// are all found, bit for bit, among the test images.
fn contains_training_images(test: &crate::data::ImageSet, train: &crate::data::ImageSet) -> bool {
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
    let seen: HashSet<u64> = test.data.chunks_exact(l).map(key).collect();
    let n = train.len();
    let probes = n.min(64);
    (0..probes)
        .map(|i| i * n / probes)
        .all(|i| seen.contains(&key(&train.data[i * l..(i + 1) * l])))
}
