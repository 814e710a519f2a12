//! One description of a network as a list of layers ([`Op`]), built once
//! from a state dict by the family that recognised it (`vit.rs`,
//! `convnext.rs`, `efficientnet.rs`), and the interpreter that runs it on
//! candle tensors: the same description gives eval-mode inference on the
//! CPU (im2col + gemm, depthwise, linear and attention kernels,
//! [`super::cpu`]), on a GPU (candle's CUDA ops) and gradients w.r.t. the
//! input (PGD, saliency): by hand on the CPU from what [`run_kept`] keeps
//! ([`super::backward`]), by candle's autograd elsewhere.
//!
//! BatchNorm is folded into the convolution before it when the description
//! is built (eval mode: `w * g/sqrt(var+eps)`, `beta - mean * g/sqrt(var+eps)`),
//! as for the ResNets. Feature taps are markers in the list: a CNN's stage
//! output is read globally average-pooled, a transformer's as its class
//! token.

use super::tap::Tap;
use crate::model::cpu::grouped::{conv2d_grouped, conv2d_grouped_bias};
use candle_core::{DType, Result, Tensor, D};

/// An elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Relu,
    /// torch's exact GELU, `x * Phi(x)` (erf form).
    Gelu,
    Silu,
    Sigmoid,
    Tanh,
}

/// One layer of a described network.
#[derive(Clone, Debug)]
pub enum Op {
    /// 2-D convolution, weight `[O, C/groups, k, k]`, optional bias `[O]`.
    Conv {
        w: Tensor,
        b: Option<Tensor>,
        stride: usize,
        pad: usize,
        groups: usize,
    },
    /// LayerNorm over the channels of an NCHW map (ConvNeXt's `LayerNorm2d`).
    LayerNorm2d {
        w: Tensor,
        b: Tensor,
        eps: f64,
    },
    /// LayerNorm over the last dimension.
    LayerNorm {
        w: Tensor,
        b: Tensor,
        eps: f64,
    },
    Act(Act),
    /// `x W^T + b` on the last dimension; `w` is `[out, in]`.
    Linear {
        w: Tensor,
        b: Tensor,
    },
    /// `x + body(x)` (ConvNeXt's layer scale is folded into its body's
    /// last convolution).
    Residual {
        body: Vec<Op>,
    },
    /// Squeeze-and-excitation (torchvision's `SqueezeExcitation`): `x *
    /// sigmoid(fc2(act(fc1(avgpool(x)))))`, `fc1` `[S, C]`, `fc2` `[C, S]`.
    SqueezeExcite {
        w1: Tensor,
        b1: Tensor,
        w2: Tensor,
        b2: Tensor,
        act: Act,
    },
    /// NCHW patch map -> tokens `[N, 1 + H*W, D]`: the class token first,
    /// then the patches row by row, plus the position embedding.
    Tokens {
        class_token: Tensor,
        pos: Tensor,
    },
    /// Multi-head self-attention (`nn.MultiheadAttention`, batch first):
    /// `in_w` `[3D, D]` (q, k, v stacked), `out_w` `[D, D]`.
    Attention {
        in_w: Tensor,
        in_b: Tensor,
        out_w: Tensor,
        out_b: Tensor,
        heads: usize,
    },
    /// Global average pooling, `[N, C, H, W]` -> `[N, C]`.
    Pool,
    /// The class token, `[N, S, D]` -> `[N, D]`.
    ClassToken,
    /// A feature tap: what flows here is read for [`Tap`] `t`.
    Tap(Tap),
}

fn act(x: &Tensor, a: Act) -> Result<Tensor> {
    match a {
        Act::Relu => x.relu(),
        Act::Gelu if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) => {
            crate::model::cpu::gelu::gelu(x)
        }
        Act::Gelu => x.gelu_erf(),
        Act::Silu if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) => {
            crate::model::cpu::silu::silu(x)
        }
        Act::Silu => x.silu(),
        Act::Sigmoid => candle_nn::ops::sigmoid(x),
        Act::Tanh => x.tanh(),
    }
}

/// LayerNorm of `x` over dimension `dim` (kept), biased variance as torch.
/// On the CPU one custom op ([`crate::model::cpu::layernorm`]); elsewhere
/// candle's ops.
fn layer_norm(x: &Tensor, dim: usize, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let cpu = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if cpu && ![x, w, b].iter().any(|t| t.track_op()) && w.dtype() == x.dtype() {
        // one pass, the affine part included
        return crate::model::cpu::layernorm::layer_norm(x, dim, eps, w, b);
    }
    let y = if cpu {
        let y = crate::model::cpu::layernorm::normalize(x, dim, eps)?;
        if dim == 1 && x.rank() == 4 {
            return channel_affine(&y, Some(w), Some(b));
        }
        y
    } else {
        let mean = x.mean_keepdim(dim)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(dim)?;
        xc.broadcast_div(&(var + eps)?.sqrt()?)?
    };
    let mut shape = vec![1; x.rank()];
    shape[dim] = w.dim(0)?;
    y.broadcast_mul(&w.reshape(shape.as_slice())?)?
        .broadcast_add(&b.reshape(shape.as_slice())?)
}

/// `x W^T + b` over the last dimension of a tensor of any rank: one op on the
/// CPU ([`crate::model::cpu::linear`]), candle's matmul elsewhere.
fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.dtype() == w.dtype()
    {
        return crate::model::cpu::linear::linear(x, w, b);
    }
    let dims = x.dims().to_vec();
    let (last, o) = (dims[dims.len() - 1], w.dim(0)?);
    let rows = x.elem_count() / last.max(1);
    let y = x.reshape((rows, last))?.matmul(&w.t()?)?.broadcast_add(b)?;
    let mut out = dims;
    *out.last_mut().expect("rank >= 1") = o;
    y.reshape(out)
}

fn per_channel(v: &Tensor) -> Result<Tensor> {
    v.reshape((1, v.elem_count(), 1, 1))
}

/// Global average pooling `[N, C, H, W]` -> `[N, C]`: on every core on the
/// CPU where no gradient flows, candle's `mean` otherwise.
pub(crate) fn pool(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && !x.track_op() {
        return crate::model::cpu::channel::plane_mean(x, None);
    }
    x.mean((2, 3))
}

/// `x * s + b` per channel of an NCHW map (either part optional): one pass
/// on the CPU where no gradient flows ([`crate::model::cpu::channel`]),
/// candle's broadcast ops otherwise.
pub(crate) fn channel_affine(x: &Tensor, s: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
    let tracked = [Some(x), s, b].into_iter().flatten().any(|t| t.track_op());
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && !tracked {
        return crate::model::cpu::channel::channel_affine(x, s, b);
    }
    let mut y = x.clone();
    if let Some(s) = s {
        y = y.broadcast_mul(&per_channel(s)?)?;
    }
    if let Some(b) = b {
        y = y.broadcast_add(&per_channel(b)?)?;
    }
    Ok(y)
}

/// Whether all of `ts` are f32 or f64 tensors of one dtype on the CPU that
/// need no gradient: the one-pass CPU kernels serve them.
fn cpu_untracked(ts: &[&Tensor]) -> bool {
    let d = ts[0].dtype();
    ts.iter().all(|t| {
        t.device().is_cpu()
            && matches!(t.dtype(), DType::F32 | DType::F64)
            && t.dtype() == d
            && !t.track_op()
    })
}

/// `x + y` (same shapes): on every core on the CPU where no gradient
/// flows, candle's add otherwise.
pub(crate) fn add(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    if cpu_untracked(&[x, y]) {
        return crate::model::cpu::channel::add(x, y);
    }
    x + y
}

/// `x * s + b` per plane of an NCHW map, `s` and `b` `[N, C]` (either
/// optional): one pass on the CPU where no gradient flows, candle's
/// broadcast ops otherwise.
pub(crate) fn plane_affine(x: &Tensor, s: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
    let mut all = vec![x];
    all.extend([s, b].into_iter().flatten());
    if cpu_untracked(&all) {
        return crate::model::cpu::channel::plane_affine(x, s, b);
    }
    let (n, c, _, _) = x.dims4()?;
    let mut y = x.clone();
    if let Some(s) = s {
        y = y.broadcast_mul(&s.reshape((n, c, 1, 1))?)?;
    }
    if let Some(b) = b {
        y = y.broadcast_add(&b.reshape((n, c, 1, 1))?)?;
    }
    Ok(y)
}

/// The (weight, bias) pairs of `ops`' first three layers if they are a 1x1
/// convolution, a GELU and a 1x1 convolution, each convolution with a bias
/// and neither strided, padded nor grouped (ConvNeXt's pointwise MLP).
pub(crate) fn mlp_weights(ops: &[Op]) -> Option<((Tensor, Tensor), (Tensor, Tensor))> {
    let pointwise = |op: &Op| match op {
        Op::Conv {
            w,
            b: Some(b),
            stride: 1,
            pad: 0,
            groups: 1,
        } if w.rank() == 4 && w.dims()[2..] == [1, 1] => Some((w.clone(), b.clone())),
        _ => None,
    };
    match (
        ops.first().and_then(pointwise),
        ops.get(1),
        ops.get(2).and_then(pointwise),
    ) {
        (Some(first), Some(Op::Act(Act::Gelu)), Some(last)) => Some((first, last)),
        _ => None,
    }
}

/// `ops` starting with a 1x1 convolution, a GELU and a 1x1 convolution (both
/// with bias; ConvNeXt's block) run as one pointwise MLP on the CPU, the
/// hidden map never written out but for the gradient
/// ([`crate::model::cpu::mlp`]); `None` where the pattern or the input does
/// not fit. With `keep`, what the three layers' backward needs, as if run
/// one by one.
fn pointwise_mlp(ops: &[Op], x: &Tensor, keep: bool) -> Result<Option<(Tensor, Vec<Saved>)>> {
    let Some((first, last)) = mlp_weights(ops) else {
        return Ok(None);
    };
    if !crate::model::cpu::mlp::serves(x)
        || !cpu_untracked(&[x, &first.0, &first.1, &last.0, &last.1])
    {
        return Ok(None);
    }
    let gelu = crate::model::cpu::gelu::gelu32;
    let (y, pre) = crate::model::cpu::mlp::pointwise_mlp(
        x,
        (&first.0, &first.1),
        gelu,
        (&last.0, &last.1),
        keep,
    )?;
    // in the layers' order: a convolution keeps its input's shape, the
    // GELU its input
    let saved = match pre {
        Some(pre) => {
            let dims = pre.dims().to_vec();
            vec![
                Saved::Shape(x.dims().to_vec()),
                Saved::Input(pre),
                Saved::Shape(dims),
            ]
        }
        None => Vec::new(),
    };
    Ok(Some((y, saved)))
}

/// Multi-head self-attention; with `keep`, also what its backward needs.
fn attention(
    x: &Tensor,
    op: (&Tensor, &Tensor, &Tensor, &Tensor),
    heads: usize,
    keep: bool,
) -> Result<(Tensor, Option<Saved>)> {
    let (in_w, in_b, out_w, out_b) = op;
    let (n, s, d) = x.dims3()?;
    let qkv = linear(x, in_w, in_b)?;
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && !x.track_op() {
        // one pass on the CPU
        let (o, att) = crate::model::cpu::attention::attention(&qkv, heads, keep)?;
        let saved = att.map(|att| Saved::Attention { qkv, att });
        return Ok((linear(&o, out_w, out_b)?, saved));
    }
    let (q, k, v) = split_heads(&qkv, heads)?;
    let att = q.matmul(&k.t()?.contiguous()?)?;
    let att = if att.device().is_cpu() && matches!(att.dtype(), DType::F32 | DType::F64) {
        crate::model::cpu::softmax::softmax_last_dim(&att)?
    } else {
        candle_nn::ops::softmax(&att, D::Minus1)?
    };
    let o = att.matmul(&v)?.transpose(1, 2)?.reshape((n, s, d))?;
    let saved = keep.then_some(Saved::Attention { qkv, att });
    Ok((linear(&o, out_w, out_b)?, saved))
}

/// The stacked projections `[N, S, 3D]` as per-head `[N, H, S, hd]`
/// queries (scaled by `1/sqrt(hd)`), keys and values.
fn split_heads(qkv: &Tensor, heads: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, s, d3) = qkv.dims3()?;
    let hd = d3 / 3 / heads;
    let qkv = qkv
        .reshape((n, s, 3, heads, hd))?
        .permute((2, 0, 3, 1, 4))?; // [3, N, H, S, hd]
    let q = (qkv.get(0)?.contiguous()? * (1.0 / (hd as f64).sqrt()))?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    Ok((q, k, v))
}

/// What a tap reads from the activations flowing at its marker.
pub fn summary(x: &Tensor) -> Result<Tensor> {
    match x.rank() {
        4 => x.mean((2, 3)),
        3 => x.narrow(1, 0, 1)?.squeeze(1),
        _ => Ok(x.clone()),
    }
}

/// What the input gradient of one layer needs from its forward pass
/// ([`super::backward`]), kept when the forward runs for a gradient.
#[derive(Debug)]
pub enum Saved {
    /// The shape of the layer's input only (convolutions, linear layers,
    /// pooling, tokens, taps).
    Shape(Vec<usize>),
    /// The layer's input (normalisations, activations).
    Input(Tensor),
    /// The layer's output (sigmoid, tanh).
    Output(Tensor),
    /// What each layer of a residual body kept.
    Residual(Vec<Saved>),
    /// The input, the first linear layer's output before its activation,
    /// and the gate (after the sigmoid), `[N, C]`.
    SqueezeExcite {
        x: Tensor,
        hidden: Tensor,
        gate: Tensor,
    },
    /// The stacked projections `[N, S, 3D]` (q, k, v) and the attention
    /// weights (after the softmax) `[N, H, S, S]`.
    Attention { qkv: Tensor, att: Tensor },
}

fn apply(op: &Op, x: &Tensor) -> Result<Tensor> {
    Ok(step(op, x, false)?.0)
}

/// One layer on `x`; with `keep`, also what its backward needs.
fn step(op: &Op, x: &Tensor, keep: bool) -> Result<(Tensor, Option<Saved>)> {
    let shape = || keep.then(|| Saved::Shape(x.dims().to_vec()));
    let input = || keep.then(|| Saved::Input(x.clone()));
    Ok(match op {
        Op::Conv {
            w,
            b,
            stride,
            pad,
            groups,
        } => {
            let y = match b {
                Some(b) => conv2d_grouped_bias(x, w, b, *stride, *pad, *groups)?,
                None => conv2d_grouped(x, w, *stride, *pad, *groups)?,
            };
            (y, shape())
        }
        Op::LayerNorm2d { w, b, eps } => (layer_norm(x, 1, w, b, *eps)?, input()),
        Op::LayerNorm { w, b, eps } => (layer_norm(x, x.rank() - 1, w, b, *eps)?, input()),
        Op::Act(a) => {
            let y = act(x, *a)?;
            let saved = match a {
                Act::Sigmoid | Act::Tanh => keep.then(|| Saved::Output(y.clone())),
                _ => input(),
            };
            (y, saved)
        }
        Op::Linear { w, b } => (linear(x, w, b)?, shape()),
        Op::Residual { body } => {
            let mut y = x.clone();
            let mut kept = Vec::new();
            let mut i = 0;
            while i < body.len() {
                if let Some((next, saved)) = pointwise_mlp(&body[i..], &y, keep)? {
                    y = next;
                    kept.extend(saved);
                    i += 3;
                    continue;
                }
                let (next, saved) = step(&body[i], &y, keep)?;
                y = next;
                kept.extend(saved);
                i += 1;
            }
            (add(x, &y)?, keep.then_some(Saved::Residual(kept)))
        }
        Op::SqueezeExcite {
            w1,
            b1,
            w2,
            b2,
            act: a,
        } => {
            let hidden = linear(&pool(x)?, w1, b1)?;
            let gate = candle_nn::ops::sigmoid(&linear(&act(&hidden, *a)?, w2, b2)?)?;
            let y = plane_affine(x, Some(&gate), None)?;
            let saved = keep.then(|| Saved::SqueezeExcite {
                x: x.clone(),
                hidden,
                gate,
            });
            (y, saved)
        }
        Op::Tokens { class_token, pos } => {
            let (n, d, h, w) = x.dims4()?;
            let t = x.reshape((n, d, h * w))?.transpose(1, 2)?;
            let cls = class_token.broadcast_as((n, 1, d))?;
            let t = Tensor::cat(&[&cls, &t], 1)?;
            if t.dim(1)? != pos.dim(1)? {
                candle_core::bail!(
                    "{} patches and a class token do not fit a position embedding of {} tokens",
                    h * w,
                    pos.dim(1)?
                )
            }
            (t.broadcast_add(pos)?, shape())
        }
        Op::Attention {
            in_w,
            in_b,
            out_w,
            out_b,
            heads,
        } => attention(x, (in_w, in_b, out_w, out_b), *heads, keep)?,
        Op::Pool => (pool(x)?, shape()),
        Op::ClassToken => (x.narrow(1, 0, 1)?.squeeze(1)?, shape()),
        Op::Tap(_) => (x.clone(), shape()),
    })
}

/// Runs `ops` on `x` to the end, keeping for each layer what its input
/// gradient needs ([`super::backward::input_grad`] takes both).
pub fn run_kept(ops: &[Op], x: &Tensor) -> Result<(Tensor, Vec<Saved>)> {
    let mut x = x.clone();
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let (y, saved) = step(op, &x, true)?;
        kept.push(saved.expect("kept"));
        x = y;
    }
    Ok((x, kept))
}

/// Runs `ops` on `x` (already normalised) and returns the features at each
/// of `taps` (`Tap::Logits`: the output), stopping as soon as all are read.
pub fn run(ops: &[Op], x: &Tensor, taps: &[Tap]) -> Result<Vec<Tensor>> {
    let mut out: Vec<Option<Tensor>> = vec![None; taps.len()];
    let mut x = x.clone();
    let done = |out: &[Option<Tensor>]| out.iter().all(|o| o.is_some());
    for op in ops {
        if let Op::Tap(t) = op {
            for (i, want) in taps.iter().enumerate() {
                if want == t && out[i].is_none() {
                    out[i] = Some(summary(&x)?);
                }
            }
            if done(&out) {
                break;
            }
            continue;
        }
        x = apply(op, &x)?;
    }
    for (i, want) in taps.iter().enumerate() {
        if out[i].is_none() {
            if *want != Tap::Logits {
                candle_core::bail!("this network has no layer '{want}'")
            }
            out[i] = Some(x.clone());
        }
    }
    Ok(out.into_iter().map(|o| o.expect("filled")).collect())
}

/// Every tensor of a description, converted to `dtype` (f64 checks).
pub fn to_dtype(ops: &[Op], dtype: DType) -> Result<Vec<Op>> {
    map_tensors(ops, &|t| t.to_dtype(dtype))
}

/// Every tensor of a description, moved to `device`.
pub fn to_device(ops: &[Op], device: &candle_core::Device) -> Result<Vec<Op>> {
    map_tensors(ops, &|t| t.to_device(device))
}

/// The description with `c` applied to every tensor.
fn map_tensors(ops: &[Op], c: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Vec<Op>> {
    ops.iter()
        .map(|op| {
            Ok(match op {
                Op::Conv {
                    w,
                    b,
                    stride,
                    pad,
                    groups,
                } => Op::Conv {
                    w: c(w)?,
                    b: b.as_ref().map(c).transpose()?,
                    stride: *stride,
                    pad: *pad,
                    groups: *groups,
                },
                Op::LayerNorm2d { w, b, eps } => Op::LayerNorm2d {
                    w: c(w)?,
                    b: c(b)?,
                    eps: *eps,
                },
                Op::LayerNorm { w, b, eps } => Op::LayerNorm {
                    w: c(w)?,
                    b: c(b)?,
                    eps: *eps,
                },
                Op::Linear { w, b } => Op::Linear { w: c(w)?, b: c(b)? },
                Op::Residual { body } => Op::Residual {
                    body: map_tensors(body, c)?,
                },
                Op::SqueezeExcite {
                    w1,
                    b1,
                    w2,
                    b2,
                    act,
                } => Op::SqueezeExcite {
                    w1: c(w1)?,
                    b1: c(b1)?,
                    w2: c(w2)?,
                    b2: c(b2)?,
                    act: *act,
                },
                Op::Tokens { class_token, pos } => Op::Tokens {
                    class_token: c(class_token)?,
                    pos: c(pos)?,
                },
                Op::Attention {
                    in_w,
                    in_b,
                    out_w,
                    out_b,
                    heads,
                } => Op::Attention {
                    in_w: c(in_w)?,
                    in_b: c(in_b)?,
                    out_w: c(out_w)?,
                    out_b: c(out_b)?,
                    heads: *heads,
                },
                other => other.clone(),
            })
        })
        .collect()
}
