//! Fine-tuning's starting point: a [`Trainer`] holding a checkpoint's
//! weights (every family semcon loads: the ResNet family fully or as a
//! linear probe, the families described as layers as a linear probe), its
//! classifier head kept or replaced for the target dataset's classes (a new
//! head initialised as torchvision's `nn.Linear`, seeded), its backbone
//! frozen for a linear probe or not; and the target dataset fitted to what
//! the model takes.

use super::probe::Probe;
use super::{Body, Trainer};
use crate::data::ImageSet;
use crate::model::net::Net;
use crate::model::{checkpoint, load, ModelOptions, ResNet};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// What to do with the checkpoint's classifier head (`fc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeadChoice {
    /// Keep it when the class counts agree, replace it otherwise.
    Auto,
    /// Keep it (an error when the class counts differ).
    Keep,
    /// Always a new, freshly initialised head.
    Replace,
}

/// What fine-tuning trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Freeze {
    /// Full fine-tuning: every weight learns, BatchNorm statistics update.
    None,
    /// Linear probe: only the head learns; the backbone stays bit-identical
    /// (eval-mode BatchNorm, as `model.eval()` for the backbone).
    Backbone,
}

/// How the starting point was made, for the sidecar and the user.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    pub checkpoint: String,
    pub arch: String,
    /// The classifier head's torchvision module (`fc`, `heads.head`).
    pub head: String,
    /// Outputs of the checkpoint's head.
    pub from_classes: usize,
    pub to_classes: usize,
    pub head_replaced: bool,
    pub freeze: Freeze,
}

impl InitReport {
    /// One line saying what happened to the head.
    pub fn head_line(&self) -> String {
        if self.head_replaced {
            format!(
                "classifier head {} replaced: {} -> {} outputs (initialised as torchvision's nn.Linear, seeded)",
                self.head, self.from_classes, self.to_classes
            )
        } else {
            format!(
                "classifier head {} kept ({} outputs)",
                self.head, self.from_classes
            )
        }
    }
}

impl Trainer {
    /// A trainer starting from `path`'s weights, its normalisation (flags of
    /// `opts`, else the sidecar's), for a target dataset of `num_classes`.
    pub fn from_checkpoint(
        path: &Path,
        opts: &ModelOptions,
        num_classes: usize,
        head: HeadChoice,
        freeze: Freeze,
        seed: u64,
        device: &Device,
    ) -> Result<(Trainer, InitReport)> {
        // The same checks as every other command (family, shapes, values).
        let m = load::load(path, opts, &Device::Cpu)?;
        let replace = match head {
            HeadChoice::Replace => true,
            HeadChoice::Auto => m.num_classes() != num_classes,
            HeadChoice::Keep if m.num_classes() != num_classes => {
                return Err(crate::invalid!(
                    "--head keep: checkpoint {} has {} outputs but the target dataset has {num_classes} classes (--head replace or auto gives it a new head)",
                    path.display(),
                    m.num_classes()
                ))
            }
            HeadChoice::Keep => false,
        };
        // The ResNet family (ResNet, Wide ResNet, ResNeXt) trains through
        // candle's graph, fully or as a probe; the families described as
        // layers (ViT, ConvNeXt, EfficientNet) have no training mode: they
        // are probed, and full fine-tuning is refused by name.
        let Some(from) = m.resnet_config().cloned() else {
            let Net::Layers(net) = &m.net else {
                unreachable!("a network without a ResNet configuration is described as layers")
            };
            if freeze == Freeze::None {
                return Err(crate::invalid!(
                    "--init {}: a {} ({}) fine-tunes as a linear probe only: pass --freeze \
                     backbone (full fine-tuning, --freeze none, is for the ResNet family: \
                     ResNet, Wide ResNet, ResNeXt)",
                    path.display(),
                    m.net.family(),
                    m.arch_name()
                ));
            }
            let tensors = checkpoint::read_state_dict(path)?;
            let net = Arc::new((**net).clone().to_device(device)?);
            let probe = Probe::new(net, tensors.clone(), num_classes)?;
            let fan_in = probe.features_dim();
            let (w, b) = if replace {
                linear_init(num_classes, fan_in, seed)
            } else {
                let get = |n: String| -> Result<Vec<f32>> {
                    Ok(tensors[&n].flatten_all()?.to_vec1::<f32>()?)
                };
                (get(probe.weight_name())?, get(probe.bias_name())?)
            };
            let mut varmap = VarMap::new();
            {
                let init = candle_nn::Init::Const(0.0);
                let (wn, bn) = (probe.weight_name(), probe.bias_name());
                varmap.get((num_classes, fan_in), &wn, init, DType::F32, device)?;
                varmap.get(num_classes, &bn, init, DType::F32, device)?;
                varmap.set_one(&wn, Tensor::from_vec(w, (num_classes, fan_in), device)?)?;
                varmap.set_one(&bn, Tensor::from_vec(b, num_classes, device)?)?;
            }
            let report = InitReport {
                checkpoint: path.display().to_string(),
                arch: m.arch_name(),
                head: probe.head.clone(),
                from_classes: m.num_classes(),
                to_classes: num_classes,
                head_replaced: replace,
                freeze,
            };
            let mut tr = Trainer::with_body(
                varmap,
                Body::Probe(probe),
                m.mean.clone(),
                m.std.clone(),
                device,
            )?;
            tr.frozen = true;
            tr.base_batches = checkpoint::read_batches_tracked(path)?;
            return Ok((tr, report));
        };
        let mut config = from.clone();
        config.num_classes = num_classes;
        let tensors = checkpoint::read_state_dict(path)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = ResNet::new(&config, vb)?;
        {
            let data = varmap.data().lock().expect("varmap lock");
            for (name, var) in data.iter() {
                if replace && name.starts_with("fc.") {
                    continue;
                }
                let t = tensors.get(name).ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!("missing tensor '{name}'"),
                })?;
                var.set(&t.to_device(device)?)?;
            }
            if replace {
                let fan_in = config.penultimate_dim();
                let (w, b) = linear_init(num_classes, fan_in, seed);
                data["fc.weight"].set(&Tensor::from_vec(w, (num_classes, fan_in), device)?)?;
                data["fc.bias"].set(&Tensor::from_vec(b, num_classes, device)?)?;
            }
        }
        let mut tr = Trainer::with_net(varmap, net, config, m.mean.clone(), m.std.clone(), device)?;
        tr.frozen = freeze == Freeze::Backbone;
        tr.base_batches = checkpoint::read_batches_tracked(path)?;
        let report = InitReport {
            checkpoint: path.display().to_string(),
            arch: from.arch_name(),
            head: "fc".into(),
            from_classes: from.num_classes,
            to_classes: num_classes,
            head_replaced: replace,
            freeze,
        };
        Ok((tr, report))
    }
}

/// A new `nn.Linear(fan_in, out)` as torchvision leaves it: weight and bias
/// uniform in +-1/sqrt(fan_in) (`kaiming_uniform_(a=sqrt(5))` and the bias
/// rule), drawn from a generator seeded with `seed`, weight first.
pub fn linear_init(out: usize, fan_in: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    let w = (0..out * fan_in)
        .map(|_| rng.gen_range(-b..b) as f32)
        .collect();
    let bias = (0..out).map(|_| rng.gen_range(-b..b) as f32).collect();
    (w, bias)
}

/// Fits a target dataset to a model of `in_channels` inputs trained at
/// `model_size` (its sidecar's `input_size`): gray images are replicated to
/// colour (a notice says so); colour images for a gray model need
/// `grayscale` (ITU-R 601-2 luma, the weights of PIL's `convert("L")`);
/// images of another size than the model's need `size` (resized,
/// antialiased bilinear), which may also be the dataset's own size to
/// train at it. Returns the fitted set and the notices.
pub fn fit_dataset(
    set: &ImageSet,
    in_channels: usize,
    model_size: Option<(usize, usize)>,
    size: Option<(usize, usize)>,
    grayscale: bool,
) -> Result<(ImageSet, Vec<String>)> {
    let mut notes = Vec::new();
    let mut set = set.clone();
    if grayscale && set.channels != 1 {
        if set.channels != 3 {
            return Err(crate::invalid!(
                "--grayscale takes RGB images; dataset {} has {} channels",
                set.name,
                set.channels
            ));
        }
        set = set.to_grayscale();
    }
    if set.channels != in_channels {
        if set.channels == 1 {
            notes.push(format!(
                "{} is gray (1 channel): replicated to the model's {in_channels} channels",
                set.name
            ));
            set = set.replicate_channels(in_channels);
        } else if in_channels == 1 && set.channels == 3 {
            return Err(crate::invalid!(
                "dataset {} has 3 channels (RGB) but the model takes 1: pass --grayscale to convert the images (ITU-R 601-2 luma, as PIL's convert(\"L\"))",
                set.name
            ));
        } else {
            return Err(crate::invalid!(
                "dataset {} has {} channels but the model takes {in_channels}; no conversion between them is known",
                set.name,
                set.channels
            ));
        }
    }
    let have = (set.height, set.width);
    match (size, model_size) {
        (Some(s), _) if s != have => {
            notes.push(format!(
                "{} resized from {}x{} to {}x{} (--input-size)",
                set.name, have.0, have.1, s.0, s.1
            ));
            set = set.resized(s.0, s.1);
        }
        (None, Some(m)) if m != have => {
            return Err(crate::invalid!(
                "dataset {} has {}x{} images but the model was trained at {}x{} (its sidecar's input_size): pass --input-size {}x{} to resize them, or --input-size {}x{} to fine-tune at the dataset's size",
                set.name, have.0, have.1, m.0, m.1, m.0, m.1, have.0, have.1
            ));
        }
        _ => {}
    }
    Ok((set, notes))
}
