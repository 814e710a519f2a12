//! A network of a family described as layers ([`LayerNet`]: ViT, ConvNeXt,
//! EfficientNet), and what building one from a state dict shares
//! ([`Weights`]: every tensor fetched by its torchvision name with the
//! shape the inferred configuration needs, checked, counted; BatchNorm
//! folded into its convolution).

use super::backward;
use super::layers::{self, Op};
use super::tap::Tap;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a setting of a model came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The state dict's keys and shapes.
    #[serde(rename = "state dict")]
    StateDict,
    /// torchvision's configuration of the variant the shapes matched.
    #[serde(rename = "torchvision")]
    Torchvision,
    Sidecar,
    Flag,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::StateDict => "state dict",
            Source::Torchvision => "torchvision's configuration",
            Source::Sidecar => "sidecar",
            Source::Flag => "flag",
            Source::Default => "default",
        })
    }
}

/// One setting of a described network, for `semcon info`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub source: Source,
}

/// A setting and where it came from.
pub fn set(name: &str, value: String, source: Source) -> Setting {
    Setting {
        name: name.into(),
        value,
        source,
    }
}

/// A classifier described as a list of layers (see [`layers`]).
#[derive(Clone, Debug)]
pub struct LayerNet {
    /// "ViT", "ConvNeXt", "EfficientNet".
    pub family: &'static str,
    /// The torchvision variant the shapes match exactly (`vit_b_16`), or a
    /// description of the configuration when none does.
    pub arch: String,
    pub in_channels: usize,
    pub num_classes: usize,
    /// The only image size the network takes (a ViT's position embedding).
    pub image_size: Option<usize>,
    /// Each tap with its feature size and the torchvision module it reads.
    pub taps: Vec<(Tap, usize, String)>,
    pub settings: Vec<Setting>,
    pub params: usize,
    pub ops: Vec<Op>,
}

impl LayerNet {
    /// Features at each of `taps` for normalised images `x`.
    pub fn features_many(&self, x: &Tensor, taps: &[Tap]) -> candle_core::Result<Vec<Tensor>> {
        for t in taps {
            if *t != Tap::Logits && !self.taps.iter().any(|(h, _, _)| h == t) {
                candle_core::bail!(
                    "{} has no layer '{t}' (it has {})",
                    self.arch,
                    self.tap_names()
                )
            }
        }
        if x.dtype() == DType::F32 {
            layers::run(&self.ops, x, taps)
        } else {
            layers::run(&layers::to_dtype(&self.ops, x.dtype())?, x, taps)
        }
    }

    /// The layer index of `tap`'s marker and whether what flows there is a
    /// map (`[B, C, h, w]`, a convolutional stage) — an error otherwise.
    fn map_index(&self, tap: Tap) -> candle_core::Result<usize> {
        let i = self
            .ops
            .iter()
            .position(|op| matches!(op, Op::Tap(t) if *t == tap));
        match (i, tap) {
            (Some(i), Tap::Stage(_)) => Ok(i),
            (Some(_), _) => candle_core::bail!(
                "{}'s layer '{tap}' is not a convolutional stage: it has no spatial map",
                self.arch
            ),
            (None, _) => candle_core::bail!(
                "{} has no layer '{tap}' (it has {})",
                self.arch,
                self.tap_names()
            ),
        }
    }

    /// The unpooled activations at a stage tap for normalised images `x`.
    pub fn maps(&self, x: &Tensor, tap: Tap) -> candle_core::Result<Tensor> {
        let i = self.map_index(tap)?;
        Ok(layers::run(&self.ops[..i], x, &[Tap::Logits])?
            .pop()
            .expect("one output"))
    }

    /// The logits for normalised images `x` and the gradient w.r.t. `x` of
    /// `sum(logits * seed(logits))`, by hand ([`super::backward`]; the CPU).
    pub fn logits_and_grad(
        &self,
        x: &Tensor,
        seed: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        backward::logits_and_grad(&self.ops, x, seed)
    }

    /// [`LayerNet::logits_and_grad`] from the activations at a stage tap
    /// ([`LayerNet::maps`]): GradCAM's gradient.
    pub fn logits_and_grad_from_maps(
        &self,
        maps: &Tensor,
        tap: Tap,
        seed: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let i = self.map_index(tap)?;
        backward::logits_and_grad(&self.ops[i + 1..], maps, seed)
    }

    /// The logits from the activations at a stage tap ([`LayerNet::maps`]).
    pub fn logits_from_maps(&self, maps: &Tensor, tap: Tap) -> candle_core::Result<Tensor> {
        let i = self.map_index(tap)?;
        Ok(layers::run(&self.ops[i + 1..], maps, &[Tap::Logits])?
            .pop()
            .expect("one output"))
    }

    /// The same network with its weights on `device`.
    pub fn to_device(mut self, device: &candle_core::Device) -> candle_core::Result<Self> {
        if !device.is_cpu() {
            self.ops = layers::to_device(&self.ops, device)?;
        }
        Ok(self)
    }

    pub fn tap_names(&self) -> String {
        self.taps
            .iter()
            .map(|(t, _, _)| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The reason images of `h`x`w` cannot go through, if any.
    pub fn check_size(&self, h: usize, w: usize) -> Option<String> {
        let s = self.image_size?;
        (h != s || w != s).then(|| {
            format!(
                "takes {s}x{s} images only (its position embedding holds {} patches of the \
                 {s}x{s} image), not {h}x{w}: image folders are resized to it (--resize/--crop \
                 choose how); arrays and other datasets must be {s}x{s} already",
                self.tokens().saturating_sub(1)
            )
        })
    }

    fn tokens(&self) -> usize {
        self.ops
            .iter()
            .find_map(|op| match op {
                Op::Tokens { pos, .. } => pos.dim(1).ok(),
                _ => None,
            })
            .unwrap_or(0)
    }
}

/// The tensors of a state dict as a family's builder takes them: by name,
/// with the shape its configuration needs; a missing or mis-shaped tensor
/// and non-finite values are errors naming the tensor (and both shapes).
pub struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    path: PathBuf,
    /// What the errors call the network ("a ViT-B/16 with 10 classes").
    pub arch: String,
    /// Parameters fetched so far (BatchNorm running statistics excluded).
    pub params: usize,
}

impl<'a> Weights<'a> {
    pub fn new(tensors: &'a HashMap<String, Tensor>, path: &Path, arch: String) -> Self {
        Weights {
            tensors,
            path: path.to_path_buf(),
            arch,
            params: 0,
        }
    }

    pub fn err(&self, msg: String) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            msg,
        }
    }

    /// Tensor `name` of exactly shape `want`.
    pub fn get(&mut self, name: &str, want: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| {
            self.err(format!(
                "missing tensor '{name}' (expected shape {want:?} for {})",
                self.arch
            ))
        })?;
        if t.dims() != want {
            return Err(self.err(format!(
                "tensor '{name}' has shape {:?} but {} needs {want:?}",
                t.dims(),
                self.arch
            )));
        }
        let (finite, nonneg) = scan(t)?;
        if !finite {
            return Err(self.err(format!("tensor '{name}' holds NaN/Inf values")));
        }
        let stat = name.ends_with(".running_mean") || name.ends_with(".running_var");
        if name.ends_with(".running_var") && !nonneg {
            return Err(self.err(format!(
                "tensor '{name}' holds negative values (a BatchNorm running variance is >= 0)"
            )));
        }
        if !stat {
            self.params += t.elem_count();
        }
        Ok(t.clone())
    }

    /// Convolution `conv.weight` `[o, i/groups, k, k]` (bias `conv.bias` if
    /// `bias`) followed by BatchNorm `bn.*` with `eps`, folded into one
    /// convolution with bias (eval mode).
    pub fn conv_bn(
        &mut self,
        conv: &str,
        bn: &str,
        (o, i, k): (usize, usize, usize),
        (stride, groups): (usize, usize),
        eps: f64,
    ) -> Result<Op> {
        let w = self.get(&format!("{conv}.weight"), &[o, i / groups, k, k])?;
        let g = self.get(&format!("{bn}.weight"), &[o])?;
        let beta = self.get(&format!("{bn}.bias"), &[o])?;
        let mean = self.get(&format!("{bn}.running_mean"), &[o])?;
        let var = self.get(&format!("{bn}.running_var"), &[o])?;
        let scale = (g / (var + eps)?.sqrt()?)?;
        let b = (beta - (mean * &scale)?)?;
        let w = w.broadcast_mul(&scale.reshape((o, 1, 1, 1))?)?;
        Ok(Op::Conv {
            w,
            b: Some(b),
            stride,
            pad: (k - 1) / 2,
            groups,
        })
    }

    /// `name.weight` `[o, i]` and `name.bias` `[o]`.
    pub fn linear(&mut self, name: &str, o: usize, i: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.get(&format!("{name}.weight"), &[o, i])?,
            self.get(&format!("{name}.bias"), &[o])?,
        ))
    }

    /// A LayerNorm's `name.weight` and `name.bias`, both `[c]`.
    pub fn norm(&mut self, name: &str, c: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.get(&format!("{name}.weight"), &[c])?,
            self.get(&format!("{name}.bias"), &[c])?,
        ))
    }

    /// A convolution with bias: `name.weight` `[o, i, k, k]`, `name.bias` `[o]`.
    pub fn linear_bias_conv(
        &mut self,
        name: &str,
        o: usize,
        i: usize,
        k: usize,
    ) -> Result<(Tensor, Tensor)> {
        Ok((
            self.get(&format!("{name}.weight"), &[o, i, k, k])?,
            self.get(&format!("{name}.bias"), &[o])?,
        ))
    }
}

/// Whether every value of `t` (f32, on the CPU as read) is finite, and
/// whether none is negative, read in place (full-size ViT-H weights are
/// GBs: no copy).
fn scan(t: &Tensor) -> Result<(bool, bool)> {
    let (st, l) = t.storage_and_layout();
    if let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*st, l.contiguous_offsets()) {
        if let Ok(v) = cpu.as_slice::<f32>() {
            let v = &v[a..b];
            return Ok((v.iter().all(|x| x.is_finite()), v.iter().all(|x| *x >= 0.0)));
        }
    }
    drop(st);
    let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    Ok((v.iter().all(|x| x.is_finite()), v.iter().all(|x| *x >= 0.0)))
}

/// The shape of `name`, if the state dict has it.
pub fn shape<'a>(shapes: &'a HashMap<String, Vec<usize>>, name: &str) -> Option<&'a [usize]> {
    shapes.get(name).map(|v| v.as_slice())
}

/// How many of `f(0)`, `f(1)`, ... the state dict has in a row.
pub fn count(shapes: &HashMap<String, Vec<usize>>, f: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|&i| shapes.contains_key(&f(i))).count()
}

/// A required shape of `dims` dimensions, or an error naming the tensor.
pub fn need<'a>(
    shapes: &'a HashMap<String, Vec<usize>>,
    name: &str,
    dims: usize,
    family: &str,
    path: &Path,
) -> Result<&'a [usize]> {
    let err = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    match shapes.get(name) {
        None => Err(err(format!(
            "missing tensor '{name}', which a torchvision {family} state dict has"
        ))),
        Some(s) if s.len() != dims || s.contains(&0) => Err(err(format!(
            "tensor '{name}' has shape {s:?}, expected {dims} non-zero dimensions for a {family}"
        ))),
        Some(s) => Ok(s),
    }
}
