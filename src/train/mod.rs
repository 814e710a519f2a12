//! Training of the paper's four variants (SPEC.md "The four model variants"):
//! standard CE; continuity CE + alpha*DS(x, P(x)) with a random colour
//! perturbation P; adversarial CE on PGD examples; and both. Checkpoints are
//! written as `.safetensors` with torchvision names (plus `num_batches_tracked`
//! so torchvision's strict `load_state_dict` accepts them) and a sidecar JSON,
//! always through a temporary file and a rename. Fine-tuning from a
//! checkpoint (`init.rs`) uses the same loop; the optimisers are `optim.rs`.

pub mod init;
pub mod optim;
pub mod probe;

use crate::data::ImageSet;
use crate::metrics::pgd::{self, PgdConfig};
use crate::model::{checkpoint, Model, ResNet, ResNetConfig, Tap};
use crate::perturb::{self, Kind};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use optim::{OptimConfig, Optimizer};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Standard,
    Continuity,
    Adv,
    AdvContinuity,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Standard => "standard",
            Variant::Continuity => "continuity",
            Variant::Adv => "adv",
            Variant::AdvContinuity => "adv-continuity",
        }
    }
    fn adversarial(self) -> bool {
        matches!(self, Variant::Adv | Variant::AdvContinuity)
    }
    /// Whether the loss has a DS term.
    pub fn continuity(self) -> bool {
        matches!(self, Variant::Continuity | Variant::AdvContinuity)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
    pub variant: Variant,
    pub alpha: f64,
    pub epochs: usize,
    pub batch: usize,
    /// The optimiser and its learning rate.
    pub optim: OptimConfig,
    pub seed: u64,
    /// PGD used to make training examples (adv variants).
    pub pgd: PgdConfig,
}

/// Per-epoch figures.
#[derive(Clone, Debug, Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub ce: f64,
    pub ds: f64,
    pub accuracy: f64,
}

/// What is being trained.
pub enum Body {
    /// A ResNet (the whole family) as candle's graph, every weight and
    /// BatchNorm statistic a variable of the trainer's `varmap`.
    ResNet { net: ResNet, config: ResNetConfig },
    /// A network described as layers (ViT, ConvNeXt, EfficientNet) as a
    /// linear probe: its backbone fixed, its head the `varmap`'s variables.
    Probe(probe::Probe),
}

/// A network being trained, with its variables.
pub struct Trainer {
    pub varmap: VarMap,
    pub body: Body,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub device: Device,
    /// Linear probe: only `fc` learns; the backbone runs in eval mode
    /// (BatchNorm running statistics, never updated) and is detached.
    pub frozen: bool,
    /// `num_batches_tracked` of the checkpoint fine-tuning started from.
    base_batches: HashMap<String, i64>,
    mean_t: Tensor,
    std_t: Tensor,
    steps: u64,
}

/// Per-channel mean and std of a set (population std), for normalisation.
pub fn channel_stats(set: &ImageSet) -> (Vec<f32>, Vec<f32>) {
    let hw = set.height * set.width;
    let mut mean = vec![0f64; set.channels];
    let mut sq = vec![0f64; set.channels];
    // 256 images at a time: a uint8 set is never expanded whole.
    for s in (0..set.len()).step_by(256) {
        let batch = set.images(s, (s + 256).min(set.len()));
        for img in batch.chunks_exact(set.image_len()) {
            for c in 0..set.channels {
                for &v in &img[c * hw..(c + 1) * hw] {
                    mean[c] += v as f64;
                    sq[c] += (v as f64) * (v as f64);
                }
            }
        }
    }
    let n = (set.len() * hw) as f64;
    let m: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
    let s: Vec<f32> = sq
        .iter()
        .zip(&mean)
        .map(|(q, s)| ((q / n - (s / n).powi(2)).max(1e-12)).sqrt() as f32)
        .collect();
    (m, s)
}

impl Trainer {
    /// A freshly initialised network (seeded).
    pub fn new(
        config: ResNetConfig,
        mean: Vec<f32>,
        std: Vec<f32>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = ResNet::new(&config, vb)?;
        init_like_torchvision(&varmap, seed, device)?;
        Self::with_net(varmap, net, config, mean, std, device)
    }

    /// A trainer over a network built on `varmap` (its weights set).
    pub(crate) fn with_net(
        varmap: VarMap,
        net: ResNet,
        config: ResNetConfig,
        mean: Vec<f32>,
        std: Vec<f32>,
        device: &Device,
    ) -> Result<Self> {
        Self::with_body(varmap, Body::ResNet { net, config }, mean, std, device)
    }

    /// A trainer over `body`, its variables in `varmap` (their values set).
    pub(crate) fn with_body(
        varmap: VarMap,
        body: Body,
        mean: Vec<f32>,
        std: Vec<f32>,
        device: &Device,
    ) -> Result<Self> {
        let c = match &body {
            Body::ResNet { config, .. } => config.in_channels,
            Body::Probe(p) => p.net.in_channels,
        };
        let mean_t = Tensor::from_slice(&mean, (1, c, 1, 1), device)?;
        let std_t = Tensor::from_slice(&std, (1, c, 1, 1), device)?;
        Ok(Trainer {
            varmap,
            body,
            mean,
            std,
            device: device.clone(),
            frozen: false,
            base_batches: HashMap::new(),
            mean_t,
            std_t,
            steps: 0,
        })
    }

    /// The ResNet being trained, if it is one.
    pub fn resnet(&self) -> Option<(&ResNet, &ResNetConfig)> {
        match &self.body {
            Body::ResNet { net, config } => Some((net, config)),
            Body::Probe(_) => None,
        }
    }

    pub fn in_channels(&self) -> usize {
        match &self.body {
            Body::ResNet { config, .. } => config.in_channels,
            Body::Probe(p) => p.net.in_channels,
        }
    }

    /// The only image size the network takes (a ViT's), if it has one.
    pub fn fixed_size(&self) -> Option<usize> {
        match &self.body {
            Body::ResNet { .. } => None,
            Body::Probe(p) => p.net.image_size,
        }
    }

    /// The classes of the head being trained.
    pub fn num_classes(&self) -> usize {
        match &self.body {
            Body::ResNet { config, .. } => config.num_classes,
            Body::Probe(p) => p.classes,
        }
    }

    /// The torchvision variant (`resnet18`, `vit_b_16`).
    pub fn arch_name(&self) -> String {
        match &self.body {
            Body::ResNet { config, .. } => config.arch_name(),
            Body::Probe(p) => p.net.arch.clone(),
        }
    }

    /// Loads weights from a checkpoint of the same architecture (ResNets).
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let Some((_, config)) = self.resnet() else {
            return Err(crate::invalid!(
                "cannot resume {}: resuming is for the ResNet family",
                path.display()
            ));
        };
        let config = config.clone();
        let tensors = checkpoint::read_state_dict(path)?;
        let shapes: HashMap<String, Vec<usize>> = tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.dims().to_vec()))
            .collect();
        let other = ResNetConfig::infer(&shapes, path)?;
        if other != config {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!(
                    "cannot resume: it is a {} ({:?} stem, width {}, {} classes, {} input channels) but training asks for a {} ({:?} stem, width {}, {} classes, {} input channels)",
                    other.arch_name(), other.stem, other.width, other.num_classes, other.in_channels,
                    config.arch_name(), config.stem, config.width, config.num_classes, config.in_channels
                ),
            });
        }
        crate::model::load::check_values(&config, &tensors, path)?;
        let data = self.varmap.data().lock().expect("varmap lock");
        for (name, var) in data.iter() {
            let t = tensors.get(name).ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("missing tensor '{name}'"),
            })?;
            var.set(&t.to_device(&self.device)?)?;
        }
        Ok(())
    }

    fn prepare(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_sub(&self.mean_t)?.broadcast_div(&self.std_t)
    }

    /// Logits for [0,1] images; `train` selects BatchNorm batch statistics
    /// (for a frozen backbone, the training-mode pass runs the backbone in
    /// eval mode and cuts its gradient: only `fc` learns).
    pub fn logits(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = self.prepare(x)?;
        let net = match &self.body {
            Body::ResNet { net, .. } => net,
            Body::Probe(p) => return p.logits(&x, &self.varmap),
        };
        if self.frozen && train {
            let f = net.features(&x, Tap::Penultimate, false)?.detach();
            return net.head(&f);
        }
        net.forward_t(&x, train)
    }

    /// The variables training updates, sorted by name: every weight and bias
    /// (not the running statistics); only `fc.*` for a frozen backbone, and
    /// a probe's head (all its variables).
    pub fn trainable(&self) -> Vec<(String, candle_core::Var)> {
        let data = self.varmap.data().lock().expect("varmap lock");
        let probe = matches!(self.body, Body::Probe(_));
        let mut names: Vec<&String> = data
            .keys()
            .filter(|k| probe || !k.contains("running_") && (!self.frozen || k.starts_with("fc.")))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|k| (k.clone(), data[k].clone()))
            .collect()
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The loss of one batch for a variant. Returns (loss, ce, ds, logits on the CE input).
    /// The adversarial examples (PGD seeded from `rng`) and the random colour
    /// perturbation P are drawn here; [`Trainer::loss_of`] does the rest.
    pub fn loss(
        &self,
        x: &Tensor,
        y: &Tensor,
        cfg: &TrainConfig,
        rng: &mut impl Rng,
    ) -> Result<(Tensor, f64, f64, Tensor)> {
        let adv = if cfg.variant.adversarial() {
            let c = PgdConfig {
                seed: rng.gen(),
                ..cfg.pgd
            };
            Some(self.adversarial(x, y, &c)?)
        } else {
            None
        };
        let perturbed = if cfg.variant.continuity() && !cfg.variant.adversarial() {
            Some(random_colour(x, rng)?)
        } else {
            None
        };
        self.loss_of(x, y, cfg, adv.as_ref(), perturbed.as_ref())
    }

    /// PGD examples for training: the attack runs on the network in eval mode
    /// (BatchNorm running statistics); the result is detached.
    pub fn adversarial(&self, x: &Tensor, y: &Tensor, pgd: &PgdConfig) -> Result<Tensor> {
        Ok(pgd::pgd_with(x, y, pgd, |xi| self.logits(xi, false))?
            .x_adv
            .detach())
    }

    /// The loss of one batch given its adversarial examples `adv` (adv
    /// variants) or perturbed copies P(x) `perturbed` (continuity):
    /// standard CE(F(x), y); continuity CE(F(x), y) + alpha * DS(x, P(x));
    /// adv CE(F(x_adv), y); adv-continuity CE(F(x_adv), y) + alpha *
    /// DS(x, x_adv). DS is the batch mean of the squared L2 logit distance.
    /// BatchNorm uses batch statistics; a pair goes through one forward pass
    /// over `cat([x, other])`, so both halves share them.
    pub fn loss_of(
        &self,
        x: &Tensor,
        y: &Tensor,
        cfg: &TrainConfig,
        adv: Option<&Tensor>,
        perturbed: Option<&Tensor>,
    ) -> Result<(Tensor, f64, f64, Tensor)> {
        let need = |t: Option<&Tensor>, what: &str| {
            t.cloned()
                .ok_or_else(|| crate::invalid!("the {} variant needs {what}", cfg.variant.name()))
        };
        let ce_input = if cfg.variant.adversarial() {
            need(adv, "adversarial examples")?
        } else {
            x.clone()
        };
        if !cfg.variant.continuity() {
            let lg = self.logits(&ce_input, true)?;
            let ce = candle_nn::loss::cross_entropy(&lg, y)?;
            let v = ce.to_scalar::<f32>()? as f64;
            return Ok((ce, v, 0.0, lg));
        }
        // Pair: the clean image with its perturbed copy (continuity) or with its
        // adversarial example (adv-continuity), in one forward pass.
        let other = if cfg.variant.adversarial() {
            ce_input.clone()
        } else {
            need(perturbed, "perturbed copies P(x)")?
        };
        let (lx, lo) = self.pair_logits(x, &other)?;
        let ce_logits = if cfg.variant.adversarial() {
            lo.clone()
        } else {
            lx.clone()
        };
        let ce = candle_nn::loss::cross_entropy(&ce_logits, y)?;
        let ds = mean_ds(&lx, &lo)?;
        let loss = (&ce + (&ds * cfg.alpha)?)?;
        Ok((
            loss,
            ce.to_scalar::<f32>()? as f64,
            ds.to_scalar::<f32>()? as f64,
            ce_logits,
        ))
    }

    /// Mean DS between the logits of `x` and of `other`, from one training-mode
    /// forward pass over both (the continuity term of the loss).
    pub fn continuity_term(&self, x: &Tensor, other: &Tensor) -> Result<Tensor> {
        let (lx, lo) = self.pair_logits(x, other)?;
        Ok(mean_ds(&lx, &lo)?)
    }

    /// Training-mode logits of `x` and of `other` from one forward pass over
    /// `cat([x, other])` (both halves share the batch statistics).
    fn pair_logits(&self, x: &Tensor, other: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let b = x.dim(0)?;
        let lg = self.logits(&Tensor::cat(&[x, other], 0)?, true)?;
        Ok((lg.narrow(0, 0, b)?, lg.narrow(0, b, b)?))
    }

    /// Writes the checkpoint (torchvision names) and its sidecar, atomically.
    pub fn save(&self, out: &Path, sidecar: &checkpoint::Sidecar) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = match &self.body {
            Body::ResNet { .. } => HashMap::new(),
            Body::Probe(p) => p.backbone_tensors(&self.base_batches)?,
        };
        for (name, var) in self.varmap.data().lock().expect("varmap lock").iter() {
            tensors.insert(name.clone(), var.as_tensor().to_device(&Device::Cpu)?);
            if let Some(p) = name.strip_suffix(".running_mean") {
                // As torch counts: every training-mode batch, none while frozen.
                let key = format!("{p}.num_batches_tracked");
                let base = self.base_batches.get(&key).copied().unwrap_or(0);
                let taken = if self.frozen { 0 } else { self.steps as i64 };
                tensors.insert(key, Tensor::new(base + taken, &Device::Cpu)?);
            }
        }
        let tmp = tmp_path(out);
        let sc_path = checkpoint::sidecar_path(out);
        let sc_tmp = tmp_path(&sc_path);
        let json = serde_json::to_string_pretty(sidecar).expect("sidecar serialises");
        let write = || -> Result<()> {
            candle_core::safetensors::save(&tensors, &tmp)
                .map_err(|e| Error::io(&tmp, std::io::Error::other(e.to_string())))?;
            std::fs::write(&sc_tmp, json + "\n").map_err(|e| Error::io(&sc_tmp, e))?;
            std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
            std::fs::rename(&sc_tmp, &sc_path).map_err(|e| Error::io(&sc_path, e))?;
            Ok(())
        };
        let written = write();
        if written.is_err() {
            // No temporary files left behind (those renamed are gone already).
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&sc_tmp);
        }
        written
    }

    /// An inference [`Model`] sharing these weights.
    pub fn model(&self, path: PathBuf) -> Result<Model> {
        let net = match &self.body {
            Body::ResNet { net, .. } => net,
            Body::Probe(p) => {
                return Model::from_layers(
                    p.with_head(&self.varmap)?,
                    path,
                    self.mean.clone(),
                    self.std.clone(),
                    &self.device,
                )
            }
        };
        Model::from_net(
            net.clone(),
            path,
            self.mean.clone(),
            self.std.clone(),
            &self.device,
        )
    }
}

/// Seeded initialisation as torchvision's ResNet does it: conv weights
/// kaiming-normal (fan_out, relu), BatchNorm weight 1 / bias 0, `fc` uniform
/// in +-1/sqrt(fan_in) (nn.Linear's default). Same seed, same weights, on any device.
pub fn init_like_torchvision(varmap: &VarMap, seed: u64, device: &Device) -> Result<()> {
    use rand_distr::Distribution;
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("running_var")
            || (name.contains("bn") || name.contains("downsample.1")) && name.ends_with(".weight")
        {
            vec![1.0; n]
        } else if name.ends_with("running_mean")
            || name.ends_with(".bias") && !name.starts_with("fc.")
        {
            vec![0.0; n]
        } else if dims.len() == 4 {
            let fan_out = (dims[0] * dims[2] * dims[3]) as f64;
            let normal = rand_distr::Normal::new(0.0, (2.0 / fan_out).sqrt()).expect("valid std");
            (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
        } else {
            let fan_in = if name == "fc.bias" {
                data["fc.weight"].dims()[1]
            } else {
                dims[dims.len() - 1]
            };
            let b = 1.0 / (fan_in as f64).sqrt();
            (0..n).map(|_| rng.gen_range(-b..b) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, dims, device)?)?;
    }
    Ok(())
}

/// Mean over the batch of the squared L2 distance between logit rows.
fn mean_ds(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    (a - b)?.sqr()?.sum(D::Minus1)?.mean_all()
}

fn tmp_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// A random colour perturbation per sample (one of brightness, contrast,
/// saturation, hue) with a strength uniform between identity and level 4.
pub fn random_colour(x: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let data: Vec<f32> = x.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
    let l = c * h * w;
    let mut out = Vec::with_capacity(data.len());
    for i in 0..b {
        let kind = Kind::COLOUR[rng.gen_range(0..Kind::COLOUR.len())];
        let id = kind.param(0, h);
        let max = kind.param(kind.levels().min(4), h);
        let v = id + (max - id) * rng.gen::<f64>();
        out.extend(perturb::apply_value(
            kind,
            v,
            &data[i * l..(i + 1) * l],
            (1, c, h, w),
            rng.gen(),
        )?);
    }
    Ok(Tensor::from_vec(out, (b, c, h, w), x.device())?)
}

/// Trains for `cfg.epochs` over `set`. `on_step(epoch, step, steps, loss, acc)` reports
/// progress; `on_epoch` is called after each epoch (e.g. to save a checkpoint).
pub fn train(
    tr: &mut Trainer,
    set: &ImageSet,
    cfg: &TrainConfig,
    on_step: &mut dyn FnMut(usize, usize, usize, f64, f64),
    on_epoch: &mut dyn FnMut(&Trainer, &EpochStats) -> Result<()>,
) -> Result<Vec<EpochStats>> {
    if set.is_empty() {
        return Err(crate::invalid!(
            "dataset {} is empty: nothing to train on",
            set.name
        ));
    }
    set.check_labels(tr.num_classes())?;
    let vars = tr.trainable().into_iter().map(|(_, v)| v).collect();
    let mut opt = Optimizer::new(vars, cfg.optim);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let n = set.len();
    let steps = n.div_ceil(cfg.batch);
    let mut history = Vec::new();
    for epoch in 1..=cfg.epochs {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let (mut sum_loss, mut sum_ce, mut sum_ds, mut correct, mut seen) =
            (0f64, 0f64, 0f64, 0usize, 0usize);
        for (step, idx) in order.chunks(cfg.batch).enumerate() {
            if idx.len() < 2 {
                continue; // BatchNorm needs more than one sample
            }
            let b = set.select(idx);
            let x = b.batch(0, b.len(), &tr.device)?;
            let y = b.batch_labels(0, b.len(), &tr.device)?;
            let (loss, ce, ds, lg) = tr.loss(&x, &y, cfg, &mut rng)?;
            let lv = loss.to_scalar::<f32>()? as f64;
            if !lv.is_finite() {
                return Err(crate::invalid!(
                    "loss is {lv} at epoch {epoch}, step {} (global step {}); training stopped (try a lower --lr or --alpha)",
                    step + 1,
                    tr.steps + 1
                ));
            }
            opt.backward_step(&loss)?;
            tr.steps += 1;
            let pred = crate::metrics::accuracy::predictions(&lg)?;
            correct += pred.iter().zip(&b.labels).filter(|(p, l)| p == l).count();
            seen += idx.len();
            sum_loss += lv * idx.len() as f64;
            sum_ce += ce * idx.len() as f64;
            sum_ds += ds * idx.len() as f64;
            on_step(
                epoch,
                step + 1,
                steps,
                sum_loss / seen as f64,
                correct as f64 / seen as f64,
            );
        }
        let s = seen.max(1) as f64;
        let stats = EpochStats {
            epoch,
            loss: sum_loss / s,
            ce: sum_ce / s,
            ds: sum_ds / s,
            accuracy: correct as f64 / s,
        };
        on_epoch(tr, &stats)?;
        history.push(stats);
    }
    Ok(history)
}
