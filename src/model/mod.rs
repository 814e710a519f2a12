//! Models: architectures (ResNet with torchvision names), checkpoint loading
//! with shape checks, normalisation inside the model, and feature taps.

pub mod checkpoint;
pub mod conv;
pub mod fused;
#[cfg(feature = "cudnn")]
pub mod gpu;
pub mod resnet;

pub use resnet::{ResNet, ResNetConfig, Stem, Tap};

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// What the user may state about a model beyond its state dict (flags).
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    pub input_size: Option<(usize, usize)>,
    pub class_names: Option<Vec<String>>,
}

/// A classifier ready to run: images in [0,1] in, logits or features out.
/// Normalisation (and gray-to-RGB replication) happens inside.
#[derive(Clone, Debug)]
pub struct Model {
    pub net: ResNet,
    pub path: PathBuf,
    /// Short name for panels (file stem).
    pub name: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub input_size: Option<(usize, usize)>,
    pub class_names: Option<Vec<String>>,
    pub sidecar: checkpoint::Sidecar,
    /// Neither --mean/--std nor a sidecar gave the normalisation (then mean 0,
    /// std 1: the checkpoint sees raw [0,1] pixels); see [`Model::norm_notice`].
    pub norm_defaulted: bool,
    mean_t: Tensor,
    std_t: Tensor,
    pub device: Device,
    /// The fused network, built on first use, for models whose weights cannot
    /// change (loaded from a file); `None`: rebuilt per call (training shares
    /// its variables with the model).
    fused_cache: Option<Arc<OnceLock<Option<Arc<fused::FusedNet>>>>>,
    /// The same for the cuDNN network on a GPU (`cudnn` builds).
    #[cfg(feature = "cudnn")]
    gpu_cache: Option<Arc<OnceLock<Option<Arc<gpu::GpuNet>>>>>,
}

impl Model {
    pub fn config(&self) -> &ResNetConfig {
        &self.net.config
    }
    pub fn num_classes(&self) -> usize {
        self.net.config.num_classes
    }

    /// Wraps a network with its normalisation.
    pub fn from_net(
        net: ResNet,
        path: PathBuf,
        mean: Vec<f32>,
        std: Vec<f32>,
        device: &Device,
    ) -> Result<Model> {
        let c = net.config.in_channels;
        let mean = norm_values(&mean, c, "--mean", false)?;
        let std = norm_values(&std, c, "--std", true)?;
        let mean_t = Tensor::from_slice(&mean, (1, c, 1, 1), device)?;
        let std_t = Tensor::from_slice(&std, (1, c, 1, 1), device)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Model {
            net,
            path,
            name,
            mean,
            std,
            input_size: None,
            class_names: None,
            sidecar: Default::default(),
            norm_defaulted: false,
            mean_t,
            std_t,
            device: device.clone(),
            fused_cache: None,
            #[cfg(feature = "cudnn")]
            gpu_cache: None,
        })
    }

    /// Checks that images of `c` channels and `h`x`w` pixels can go through.
    pub fn check_input(&self, c: usize, h: usize, w: usize) -> Result<()> {
        if h == 0 || w == 0 {
            // candle's convolution would underflow (a panic) on empty images
            return Err(crate::invalid!(
                "images of {h}x{w} pixels cannot go through model {}",
                self.name
            ));
        }
        let want = self.net.config.in_channels;
        if c != want && c != 1 {
            return Err(crate::invalid!(
                "images have {c} channels but model {} takes {want}",
                self.name
            ));
        }
        Ok(())
    }

    /// Replicates gray to RGB if needed, then normalises.
    pub fn prepare(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        self.check_input(c, h, w)?;
        let want = self.net.config.in_channels;
        let x = if c == want {
            x.clone()
        } else {
            x.repeat((1, want, 1, 1))?
        };
        Ok(x.broadcast_sub(&self.mean_t)?.broadcast_div(&self.std_t)?)
    }

    /// The network folded for the fused CPU path ([`fused`]), or `None` where
    /// candle's graph runs instead (GPU, f64 weights, or `SEMCON_NO_FUSED` set,
    /// which benchmarks use to compare the two).
    pub fn fused(&self) -> Result<Option<Arc<fused::FusedNet>>> {
        if !self.device.is_cpu() || std::env::var_os("SEMCON_NO_FUSED").is_some() {
            return Ok(None);
        }
        if let Some(v) = self.fused_cache.as_ref().and_then(|c| c.get()) {
            return Ok(v.clone());
        }
        let v = self.net.fused(&self.mean, &self.std)?.map(Arc::new);
        if let Some(c) = &self.fused_cache {
            let _ = c.set(v.clone());
        }
        Ok(v)
    }

    /// Declares that the weights will not change (a loaded checkpoint, a
    /// benchmark), so the fused CPU network and the GPU network are built once
    /// and kept. Models sharing their variables with training must not be frozen.
    pub fn with_frozen_weights(mut self) -> Model {
        self.fused_cache = Some(Default::default());
        #[cfg(feature = "cudnn")]
        {
            self.gpu_cache = Some(Default::default());
        }
        self
    }

    /// The cuDNN network for a GPU model with frozen f32 weights (`cudnn`
    /// builds; `SEMCON_NO_FUSED` selects candle's graph instead).
    #[cfg(feature = "cudnn")]
    pub fn gpu(&self) -> Result<Option<Arc<gpu::GpuNet>>> {
        let (Device::Cuda(dev), Some(cache)) = (&self.device, &self.gpu_cache) else {
            return Ok(None);
        };
        if std::env::var_os("SEMCON_NO_FUSED").is_some() {
            return Ok(None);
        }
        if let Some(v) = cache.get() {
            return Ok(v.clone());
        }
        let v = match self.net.fused(&self.mean, &self.std)? {
            Some(f) => Some(Arc::new(gpu::GpuNet::new(&f, dev)?)),
            None => None,
        };
        let _ = cache.set(v.clone());
        Ok(v)
    }

    /// Which implementation runs this model's inference and PGD: "fused"
    /// (CPU), "cudnn" / "cudnn-tf32" (GPU) or "graph" (candle's graph).
    pub fn path_name(&self) -> Result<&'static str> {
        #[cfg(feature = "cudnn")]
        if let Some(g) = self.gpu()? {
            return Ok(g.math());
        }
        Ok(if self.fused()?.is_some() {
            "fused"
        } else {
            "graph"
        })
    }

    /// Mean cross-entropy and its gradient w.r.t. images `x` in [0,1]
    /// (eval mode), by whichever path runs this model: the fused CPU network,
    /// the cuDNN network, or candle's autograd.
    pub fn loss_and_input_grad(&self, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, h, w) = x.dims4()?;
        self.check_input(c, h, w)?;
        let x = x.detach();
        if let Some(net) = self.fused()? {
            let labels = y.flatten_all()?.to_vec1::<u32>()?;
            let (loss, g) =
                net.loss_and_grad(&x.flatten_all()?.to_vec1::<f32>()?, (b, c, h, w), &labels)?;
            return Ok((
                Tensor::new(loss, &self.device)?,
                Tensor::from_vec(g, (b, c, h, w), &self.device)?,
            ));
        }
        #[cfg(feature = "cudnn")]
        if let Some(g) = self.gpu()? {
            let onehot = self.one_hot(y)?;
            return self.gpu_loss_and_grad(&g, &x, &onehot);
        }
        let v = candle_core::Var::from_tensor(&x)?;
        let loss = candle_nn::loss::cross_entropy(&self.logits(v.as_tensor())?, y)?;
        let grads = loss.backward()?;
        let g = grads
            .get(v.as_tensor())
            .ok_or_else(|| crate::invalid!("no input gradient"))?
            .clone();
        Ok((loss, g))
    }

    /// One-hot f32 labels `[N, K]` on the model's device; a label out of
    /// range is an error.
    pub fn one_hot(&self, y: &Tensor) -> Result<Tensor> {
        let labels = y.flatten_all()?.to_vec1::<u32>()?;
        let k = self.num_classes();
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
            return Err(crate::invalid!(
                "label {bad} is out of range for model {} with {k} classes",
                self.name
            ));
        }
        let mut v = vec![0f32; labels.len() * k];
        for (i, &l) in labels.iter().enumerate() {
            v[i * k + l as usize] = 1.0;
        }
        Ok(Tensor::from_vec(v, (labels.len(), k), &self.device)?)
    }

    /// [`Model::loss_and_input_grad`] on the cuDNN network, labels one-hot:
    /// the gradient is taken w.r.t. the normalised input and carried back
    /// through the normalisation (and the gray-to-RGB replication).
    #[cfg(feature = "cudnn")]
    pub fn gpu_loss_and_grad(
        &self,
        net: &gpu::GpuNet,
        x: &Tensor,
        onehot: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let xp = self.prepare(x)?;
        let (loss, gp) = net.loss_and_grad(&xp, onehot)?;
        let g = gp.broadcast_div(&self.std_t)?;
        let g = if x.dim(1)? == g.dim(1)? {
            g
        } else {
            g.sum_keepdim(1)?
        };
        Ok((loss, g))
    }

    /// Logits for images in [0,1] (eval mode).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.features(x, Tap::Logits)
    }

    /// Features at a tap for images in [0,1] (eval mode).
    pub fn features(&self, x: &Tensor, tap: Tap) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if b > 0 && x.dtype() == DType::F32 && !x.track_op() {
            if let Some(net) = self.fused()? {
                self.check_input(c, h, w)?;
                let v = net.features(&x.flatten_all()?.to_vec1::<f32>()?, (b, c, h, w), tap)?;
                let d = v.len() / b;
                return Ok(Tensor::from_vec(v, (b, d), &self.device)?);
            }
        }
        #[cfg(feature = "cudnn")]
        if b > 0 && x.dtype() == DType::F32 && !x.track_op() {
            if let Some(net) = self.gpu()? {
                let xp = self.prepare(x)?;
                return Ok(net.features(&xp, tap)?);
            }
        }
        self.features_graph(x, tap)
    }

    /// [`Model::features`] through candle's graph whatever the device (what a
    /// GPU runs, and what gradients flow through).
    pub fn features_graph(&self, x: &Tensor, tap: Tap) -> Result<Tensor> {
        let x = self.prepare(x)?;
        Ok(self.net.features(&x, tap, false)?)
    }
}

/// Per-channel normalisation values for a model of `c` input channels (one
/// value is repeated), finite and, for a std, positive. `what` names where
/// they came from ("--mean", or the sidecar field) in errors.
fn norm_values(v: &[f32], c: usize, what: &str, positive: bool) -> Result<Vec<f32>> {
    let v = match v.len() {
        1 => vec![v[0]; c],
        n if n == c => v.to_vec(),
        n => {
            return Err(crate::invalid!(
                "{what} has {n} values but the model takes {c} input channels"
            ))
        }
    };
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(crate::invalid!("{what} values must be finite, got {x}"));
    }
    if let Some(x) = v.iter().find(|x| positive && **x <= 0.0) {
        return Err(crate::invalid!("{what} values must be positive, got {x}"));
    }
    Ok(v)
}

/// [`load`], with the checkpoint named in the error when the error does not
/// already name it.
pub fn load_named(path: &Path, opts: &ModelOptions, device: &Device) -> anyhow::Result<Model> {
    load(path, opts, device).map_err(|e| {
        let shown = path.display().to_string();
        if e.to_string().contains(&shown) {
            anyhow::Error::from(e)
        } else {
            anyhow::Error::from(e).context(format!("cannot load checkpoint {shown}"))
        }
    })
}

/// Loads a checkpoint, infers the architecture, checks every tensor's shape.
pub fn load(path: &Path, opts: &ModelOptions, device: &Device) -> Result<Model> {
    let tensors = checkpoint::read_state_dict(path)?;
    let sidecar = checkpoint::read_sidecar(path)?.unwrap_or_default();
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    let config = ResNetConfig::infer(&shapes, path)?;
    check_shapes(&config, &shapes, path)?;
    check_values(&config, &tensors, path)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let net = ResNet::new(&config, vb)?;
    let c = config.in_channels;
    // Flags win over the sidecar; errors name whichever gave the value.
    let sc = checkpoint::sidecar_path(path);
    let source = |flag: bool, field: &str| {
        if flag {
            format!("--{}", field.replace('_', "-"))
        } else {
            format!("sidecar {}: {field}", sc.display())
        }
    };
    let mean = match opts.mean.as_ref().or(sidecar.mean.as_ref()) {
        Some(v) => norm_values(v, c, &source(opts.mean.is_some(), "mean"), false)?,
        None => vec![0.0; c],
    };
    let std = match opts.std.as_ref().or(sidecar.std.as_ref()) {
        Some(v) => norm_values(v, c, &source(opts.std.is_some(), "std"), true)?,
        None => vec![1.0; c],
    };
    let mut m = Model::from_net(net, path.to_path_buf(), mean, std, device)?;
    m.input_size = opts.input_size.or(sidecar.input_size.map(|[h, w]| (h, w)));
    if let (None, Some([h, w])) = (opts.input_size, sidecar.input_size) {
        if h == 0 || w == 0 {
            return Err(crate::invalid!(
                "{} is {h}x{w}: both sides must be at least 1",
                source(false, "input_size")
            ));
        }
    }
    // Loaded weights never change: the fused forms can be kept.
    m = m.with_frozen_weights();
    m.class_names = opts.class_names.clone().or(sidecar.class_names.clone());
    if let Some(names) = &m.class_names {
        if names.len() != config.num_classes {
            let given = if opts.class_names.is_some() {
                format!("{} class names given", names.len())
            } else {
                format!("{} has {} names", source(false, "class_names"), names.len())
            };
            return Err(crate::invalid!(
                "{given} but checkpoint {} has {} outputs",
                path.display(),
                config.num_classes
            ));
        }
    }
    m.norm_defaulted = opts.mean.is_none()
        && opts.std.is_none()
        && sidecar.mean.is_none()
        && sidecar.std.is_none();
    m.sidecar = sidecar;
    Ok(m)
}

impl Model {
    /// One line for the user when the normalisation was not stated: a
    /// torchvision checkpoint trained on normalised inputs gives poor numbers
    /// on raw pixels, which would otherwise look like a bad model.
    pub fn norm_notice(&self) -> Option<String> {
        self.norm_defaulted.then(|| {
            format!(
                "{}: no --mean/--std and no sidecar {}: inputs are not normalised (mean 0, std 1)",
                self.name,
                checkpoint::sidecar_path(&self.path).display()
            )
        })
    }
}

/// Rejects weights that would silently give constant or NaN outputs:
/// NaN/Inf values anywhere, negative BatchNorm running variances.
pub(crate) fn check_values(
    config: &ResNetConfig,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let err = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    for (name, _) in config.expected_shapes() {
        let Some(t) = tensors.get(&name) else {
            continue;
        };
        let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(err(format!("tensor '{name}' holds NaN/Inf values")));
        }
        if name.ends_with(".running_var") && v.iter().any(|x| *x < 0.0) {
            return Err(err(format!(
                "tensor '{name}' holds negative values (a BatchNorm running variance is >= 0)"
            )));
        }
    }
    Ok(())
}

fn check_shapes(
    config: &ResNetConfig,
    shapes: &HashMap<String, Vec<usize>>,
    path: &Path,
) -> Result<()> {
    for (name, want) in config.expected_shapes() {
        match shapes.get(&name) {
            None => {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!(
                        "missing tensor '{name}' (expected shape {want:?} for a {} with {} stem)",
                        config.arch_name(),
                        format!("{:?}", config.stem).to_lowercase()
                    ),
                })
            }
            Some(got) if got != &want => {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!(
                        "tensor '{name}' has shape {got:?} but the {} inferred from this checkpoint needs {want:?}",
                        config.arch_name()
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(())
}
