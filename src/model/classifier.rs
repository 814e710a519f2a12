//! The [`Model`] type: a network with its normalisation, name and settings,
//! ready to run on images in [0,1]. It picks the path that runs a batch: the
//! fused CPU network (ResNets), a described family's layers with their
//! hand-written input gradient (CPU), the cuDNN network on a GPU, or
//! candle's graph (for gradients w.r.t. weights, other dtypes, or
//! `SEMCON_NO_FUSED`).

use super::backward;
use super::checkpoint::{sidecar_path, Sidecar};
use super::cpu::fused::FusedNet;
#[cfg(feature = "cudnn")]
use super::cuda::GpuNet;
use super::described::LayerNet;
use super::net::Net;
use super::norm::norm_values;
use super::resnet::{ResNet, ResNetConfig};
use super::tap::Tap;
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Each sample's logit of its one-hot class, as f32.
fn picked_logits(logits: &Tensor, onehot: &Tensor) -> Result<Vec<f32>> {
    let picked = (logits * onehot.to_dtype(logits.dtype())?)?.sum(1)?;
    Ok(picked.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// A classifier ready to run: images in [0,1] in, logits or features out.
/// Normalisation (and gray-to-RGB replication) happens inside.
#[derive(Clone, Debug)]
pub struct Model {
    pub net: Net,
    pub path: PathBuf,
    /// Short name for panels (file stem).
    pub name: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub input_size: Option<(usize, usize)>,
    pub class_names: Option<Vec<String>>,
    pub sidecar: Sidecar,
    /// Neither --mean/--std nor a sidecar gave the normalisation (then mean 0,
    /// std 1: the checkpoint sees raw [0,1] pixels); see [`Model::norm_notice`].
    pub norm_defaulted: bool,
    mean_t: Tensor,
    std_t: Tensor,
    pub device: Device,
    /// The fused network, built on first use, for models whose weights cannot
    /// change (loaded from a file); `None`: rebuilt per call (training shares
    /// its variables with the model).
    fused_cache: Option<Arc<OnceLock<Option<Arc<FusedNet>>>>>,
    /// The same for the cuDNN network on a GPU (`cudnn` builds).
    #[cfg(feature = "cudnn")]
    gpu_cache: Option<Arc<OnceLock<Option<Arc<GpuNet>>>>>,
}

impl Model {
    /// A ResNet's configuration (`None` for the other families).
    pub fn resnet_config(&self) -> Option<&ResNetConfig> {
        self.net.resnet().map(|r| &r.config)
    }
    /// The ResNet (training and fine-tuning take only these).
    pub fn resnet(&self) -> Option<&ResNet> {
        self.net.resnet()
    }
    pub fn in_channels(&self) -> usize {
        self.net.in_channels()
    }
    pub fn num_classes(&self) -> usize {
        self.net.num_classes()
    }
    /// The torchvision variant name or a description of the configuration.
    pub fn arch_name(&self) -> String {
        self.net.arch_name()
    }
    /// The taps this model has: `logits`, `penultimate`, then each stage
    /// or block from the input on (the order of `--layer all`).
    pub fn taps(&self) -> Vec<Tap> {
        let mut v: Vec<Tap> = vec![Tap::Logits, Tap::Penultimate];
        v.extend(
            self.net
                .taps()
                .into_iter()
                .map(|t| t.0)
                .filter(|t| !matches!(t, Tap::Logits | Tap::Penultimate)),
        );
        v
    }

    /// Wraps a ResNet with its normalisation.
    pub fn from_net(
        net: ResNet,
        path: PathBuf,
        mean: Vec<f32>,
        std: Vec<f32>,
        device: &Device,
    ) -> Result<Model> {
        Self::wrap(Net::ResNet(net), path, mean, std, device)
    }

    /// Wraps a described network (ViT, ConvNeXt, EfficientNet).
    pub fn from_layers(
        net: LayerNet,
        path: PathBuf,
        mean: Vec<f32>,
        std: Vec<f32>,
        device: &Device,
    ) -> Result<Model> {
        Self::wrap(Net::Layers(Arc::new(net)), path, mean, std, device)
    }

    fn wrap(
        net: Net,
        path: PathBuf,
        mean: Vec<f32>,
        std: Vec<f32>,
        device: &Device,
    ) -> Result<Model> {
        let c = net.in_channels();
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
        let want = self.in_channels();
        if c != want && c != 1 {
            return Err(crate::invalid!(
                "images have {c} channels but model {} takes {want}",
                self.name
            ));
        }
        if let Net::Layers(l) = &self.net {
            if let Some(why) = l.check_size(h, w) {
                return Err(crate::invalid!("model {} ({}) {why}", self.name, l.arch));
            }
        }
        Ok(())
    }

    /// Replicates gray to RGB if needed, then normalises.
    pub fn prepare(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        self.check_input(c, h, w)?;
        let want = self.in_channels();
        let x = if c == want {
            x.clone()
        } else {
            x.repeat((1, want, 1, 1))?
        };
        Ok(x.broadcast_sub(&self.mean_t)?.broadcast_div(&self.std_t)?)
    }

    /// The network folded for the fused CPU path ([`super::cpu::fused`]), or `None` where
    /// candle's graph runs instead (GPU, f64 weights, or `SEMCON_NO_FUSED` set,
    /// which benchmarks use to compare the two).
    pub fn fused(&self) -> Result<Option<Arc<FusedNet>>> {
        if !self.device.is_cpu() || std::env::var_os("SEMCON_NO_FUSED").is_some() {
            return Ok(None);
        }
        if let Some(v) = self.fused_cache.as_ref().and_then(|c| c.get()) {
            return Ok(v.clone());
        }
        let Some(net) = self.net.resnet() else {
            return Ok(None);
        };
        let v = net.fused(&self.mean, &self.std)?.map(Arc::new);
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
    pub fn gpu(&self) -> Result<Option<Arc<GpuNet>>> {
        let (Device::Cuda(dev), Some(cache)) = (&self.device, &self.gpu_cache) else {
            return Ok(None);
        };
        if std::env::var_os("SEMCON_NO_FUSED").is_some() {
            return Ok(None);
        }
        if let Some(v) = cache.get() {
            return Ok(v.clone());
        }
        let Some(net) = self.net.resnet() else {
            return Ok(None);
        };
        // grouped convolutions (ResNeXt) run through candle's graph on a GPU
        let v = match net.fused(&self.mean, &self.std)? {
            Some(f) if !f.grouped() => Some(Arc::new(GpuNet::new(&f, dev)?)),
            _ => None,
        };
        let _ = cache.set(v.clone());
        Ok(v)
    }

    /// Which implementation runs this model's inference and PGD: "fused"
    /// (a ResNet on the CPU), "layers" (a described family on the CPU: its
    /// layers with the hand-written input gradient), "cudnn" / "cudnn-tf32"
    /// (GPU) or "graph" (candle's graph).
    pub fn path_name(&self) -> Result<&'static str> {
        #[cfg(feature = "cudnn")]
        if let Some(g) = self.gpu()? {
            return Ok(g.math());
        }
        Ok(if self.fused()?.is_some() {
            "fused"
        } else if self.by_hand().is_some() {
            "layers"
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
        if let Some(l) = self.by_hand() {
            let onehot = self.one_hot(y)?;
            let xp = self.prepare(&x)?;
            let mut loss = None;
            let (_, gp) = l.logits_and_grad(&xp, |lg| {
                let (ls, g) = backward::cross_entropy_seed(lg, &onehot.to_dtype(lg.dtype())?)?;
                loss = Some(ls);
                Ok(g)
            })?;
            let loss = loss.ok_or_else(|| crate::invalid!("no loss"))?;
            return Ok((loss, self.grad_to_images(&x, &gp)?));
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

    /// Each sample's raw logit of class `targets[i]` (eval mode) and its
    /// gradient w.r.t. the image in [0,1] (`[N, C, H, W]`): what saliency
    /// and Integrated Gradients are made of. The fused CPU network where it
    /// runs this model, else candle's graph.
    pub fn target_logit_grad(&self, x: &Tensor, targets: &[u32]) -> Result<(Vec<f32>, Tensor)> {
        if let Some(net) = self.fused()? {
            let (b, c, h, w) = x.dims4()?;
            self.check_input(c, h, w)?;
            // the fused network checks the targets' count and range
            let px = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let (picked, g) = net.target_logit_grad(&px, (b, c, h, w), targets)?;
            return Ok((picked, Tensor::from_vec(g, (b, c, h, w), &self.device)?));
        }
        if let Some(l) = self.by_hand() {
            let onehot = self.targets_one_hot(x.dim(0)?, targets)?;
            let xp = self.prepare(&x.detach())?;
            let (lg, gp) = l.logits_and_grad(&xp, |lg| onehot.to_dtype(lg.dtype()))?;
            return Ok((picked_logits(&lg, &onehot)?, self.grad_to_images(x, &gp)?));
        }
        let v = candle_core::Var::from_tensor(&x.detach())?;
        let lg = self.features_graph(v.as_tensor(), Tap::Logits)?;
        let (picked, grads) = self.pick_and_backward(&lg, targets)?;
        let g = grads
            .get(v.as_tensor())
            .ok_or_else(|| crate::invalid!("no input gradient"))?
            .clone();
        Ok((picked, g))
    }

    /// GradCAM's ingredients at a convolutional stage `tap`: the unpooled
    /// activations `[N, K, h, w]` (eval mode) and the gradient of each
    /// sample's raw logit of class `targets[i]` w.r.t. them, with those
    /// logits.
    pub fn maps_and_grad(
        &self,
        x: &Tensor,
        tap: Tap,
        targets: &[u32],
    ) -> Result<(Tensor, Tensor, Vec<f32>)> {
        self.check_tap(tap)?;
        let xp = self.prepare(&x.detach())?;
        let a = self.net.maps(&xp, tap)?.detach();
        if let Some(l) = self.by_hand() {
            let onehot = self.targets_one_hot(x.dim(0)?, targets)?;
            let (lg, g) = l.logits_and_grad_from_maps(&a, tap, |lg| onehot.to_dtype(lg.dtype()))?;
            let picked = picked_logits(&lg, &onehot)?;
            return Ok((a, g, picked));
        }
        let v = candle_core::Var::from_tensor(&a)?;
        let lg = self.net.logits_from_maps(v.as_tensor(), tap)?;
        let (picked, grads) = self.pick_and_backward(&lg, targets)?;
        let g = grads
            .get(v.as_tensor())
            .ok_or_else(|| crate::invalid!("no gradient at {tap}"))?
            .clone();
        Ok((a, g, picked))
    }

    /// The described network whose input gradients are taken by hand
    /// ([`backward`]): a ViT, ConvNeXt or EfficientNet on the CPU, unless
    /// `SEMCON_NO_FUSED` selects candle's graph.
    fn by_hand(&self) -> Option<&LayerNet> {
        match &self.net {
            Net::Layers(l)
                if self.device.is_cpu() && std::env::var_os("SEMCON_NO_FUSED").is_none() =>
            {
                Some(l)
            }
            _ => None,
        }
    }

    /// One-hot rows of `targets` for a batch of `b`; a count other than `b`
    /// or a class out of range is an error.
    fn targets_one_hot(&self, b: usize, targets: &[u32]) -> Result<Tensor> {
        if targets.len() != b {
            return Err(crate::invalid!(
                "{} target classes for a batch of {b} images",
                targets.len()
            ));
        }
        self.one_hot(&Tensor::from_slice(targets, b, &self.device)?)
    }

    /// A gradient w.r.t. the normalised input `gp`, carried back through the
    /// normalisation (and the gray-to-RGB replication) to the images `x`.
    fn grad_to_images(&self, x: &Tensor, gp: &Tensor) -> Result<Tensor> {
        let g = gp.broadcast_div(&self.std_t.to_dtype(gp.dtype())?)?;
        Ok(if x.dim(1)? == g.dim(1)? {
            g
        } else {
            g.sum_keepdim(1)?
        })
    }

    /// Sample i's logit of class `targets[i]`, and the gradients of their sum.
    fn pick_and_backward(
        &self,
        logits: &Tensor,
        targets: &[u32],
    ) -> Result<(Vec<f32>, candle_core::backprop::GradStore)> {
        let y = Tensor::from_slice(targets, targets.len(), &self.device)?;
        let onehot = self.one_hot(&y)?.to_dtype(logits.dtype())?;
        let picked = (logits * onehot)?.sum(1)?;
        let grads = picked.sum_all()?.backward()?;
        let values = picked.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok((values, grads))
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
        net: &GpuNet,
        x: &Tensor,
        onehot: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let xp = self.prepare(x)?;
        let (loss, gp) = net.loss_and_grad(&xp, onehot)?;
        Ok((loss, self.grad_to_images(x, &gp)?))
    }

    /// Logits for images in [0,1] (eval mode).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.features(x, Tap::Logits)
    }

    /// An error naming the model's layers unless it has `tap`.
    pub fn check_tap(&self, tap: Tap) -> Result<()> {
        let taps = self.taps();
        if taps.contains(&tap) {
            return Ok(());
        }
        let names: Vec<String> = taps.iter().map(|t| t.to_string()).collect();
        Err(crate::invalid!(
            "model {} ({}) has no layer '{tap}'; its layers: {}",
            self.name,
            self.arch_name(),
            names.join(", ")
        ))
    }

    /// Features at a tap for images in [0,1] (eval mode).
    pub fn features(&self, x: &Tensor, tap: Tap) -> Result<Tensor> {
        self.check_tap(tap)?;
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

    /// Features at each of `taps` for the same images: one forward pass on
    /// the fused CPU network; one pass per tap on the GPU and through
    /// candle's graph.
    pub fn features_many(&self, x: &Tensor, taps: &[Tap]) -> Result<Vec<Tensor>> {
        for &t in taps {
            self.check_tap(t)?;
        }
        let (b, c, h, w) = x.dims4()?;
        if b > 0 && x.dtype() == DType::F32 && !x.track_op() {
            if let Some(net) = self.fused()? {
                self.check_input(c, h, w)?;
                let vs =
                    net.features_many(&x.flatten_all()?.to_vec1::<f32>()?, (b, c, h, w), taps)?;
                return vs
                    .into_iter()
                    .map(|v| {
                        let d = v.len() / b;
                        Ok(Tensor::from_vec(v, (b, d), &self.device)?)
                    })
                    .collect();
            }
        }
        if let Net::Layers(l) = &self.net {
            // one pass for every tap
            let xp = self.prepare(x)?;
            return Ok(l.features_many(&xp, taps)?);
        }
        taps.iter().map(|&t| self.features(x, t)).collect()
    }

    /// [`Model::features`] through candle's graph whatever the device (what a
    /// GPU runs, and what gradients flow through).
    pub fn features_graph(&self, x: &Tensor, tap: Tap) -> Result<Tensor> {
        let x = self.prepare(x)?;
        Ok(self.net.features(&x, tap, false)?)
    }

    /// One line for the user when the normalisation was not stated: a
    /// torchvision checkpoint trained on normalised inputs gives poor numbers
    /// on raw pixels, which would otherwise look like a bad model.
    pub fn norm_notice(&self) -> Option<String> {
        self.norm_defaulted.then(|| {
            let sc = sidecar_path(&self.path);
            let sidecar = if sc.is_file() {
                format!("sidecar {} gives none", sc.display())
            } else {
                format!("no sidecar {}", sc.display())
            };
            format!(
                "{}: no --mean/--std and {sidecar}: inputs are not normalised (mean 0, std 1)",
                self.name
            )
        })
    }
}

/// The taps every one of `models` has, in the first model's order (what a
/// run over several models can read everywhere; ResNet beside ViT: the
/// penultimate features and the logits).
pub fn common_taps(models: &[Model]) -> Vec<Tap> {
    let Some(first) = models.first() else {
        return Tap::ALL.to_vec();
    };
    let all: Vec<Vec<Tap>> = models.iter().map(|m| m.taps()).collect();
    first
        .taps()
        .into_iter()
        .filter(|t| all.iter().all(|ts| ts.contains(t)))
        .collect()
}
