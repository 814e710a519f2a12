//! The gradient w.r.t. the input of a network described as layers
//! ([`Op`]), by hand on the CPU: [`layers::run_kept`] runs the forward
//! keeping what each layer's backward needs ([`Saved`]), then
//! [`input_grad`] applies each layer's input-gradient formula in reverse.
//! No weight gradient is formed and no graph is recorded (candle's autograd
//! computes the gradient of every weight a matmul or a product touches and
//! accumulates each node's gradient onto zeros); what PGD, saliency,
//! Integrated Gradients and GradCAM ask of ViT, ConvNeXt and EfficientNet.
//! candle's autograd over the same description stays the reference
//! (`tests/described.rs` compares them) and what a GPU runs.

use super::layers::{self, Act, Op, Saved};
use crate::model::cpu::{attention, channel, gelu, grouped, layernorm, linear, silu};
use candle_core::{DType, Result, Tensor, D};

/// The gradient w.r.t. the input of `ops` given the gradient `g` at their
/// output, from what [`layers::run_kept`] kept on the same `ops`.
pub fn input_grad(ops: &[Op], kept: &[Saved], g: &Tensor) -> Result<Tensor> {
    if ops.len() != kept.len() {
        candle_core::bail!("backward: {} layers but {} kept", ops.len(), kept.len())
    }
    let mut g = g.clone();
    let mut i = ops.len();
    while i > 0 {
        // ConvNeXt's pointwise MLP (1x1 conv, GELU, 1x1 conv) in one pass
        // per block of pixels on the CPU, the hidden gradient never written
        if i >= 3 {
            if let (Some(((w1, _), (w2, _))), Saved::Input(pre)) =
                (layers::mlp_weights(&ops[i - 3..i]), &kept[i - 2])
            {
                let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
                if [pre, &g, &w1, &w2].iter().all(|t| f32_cpu(t)) && pre.rank() == 4 {
                    g = crate::model::cpu::mlp::pointwise_mlp_grad(
                        pre,
                        &g,
                        &w1,
                        gelu::gelu_grad32,
                        &w2,
                    )?;
                    i -= 3;
                    continue;
                }
            }
        }
        g = layer_grad(&ops[i - 1], &kept[i - 1], &g)?;
        i -= 1;
    }
    Ok(g)
}

/// `g W` for `y = x W^T + b` over the last dimension of any rank.
fn linear_grad(g: &Tensor, w: &Tensor) -> Result<Tensor> {
    if g.device().is_cpu() && g.dtype() == w.dtype() {
        return linear::linear_grad_input(g, w);
    }
    let dims = g.dims().to_vec();
    let (o, i) = w.dims2()?;
    let rows = g.elem_count() / o.max(1);
    let dx = g.reshape((rows, o))?.matmul(w)?;
    let mut out = dims;
    *out.last_mut().expect("rank >= 1") = i;
    dx.reshape(out)
}

/// The gradient through activation `a`, from its input or output.
fn act_grad(a: Act, saved: &Saved, g: &Tensor) -> Result<Tensor> {
    match (a, saved) {
        (Act::Relu, Saved::Input(x)) => g * x.gt(0.0)?.to_dtype(g.dtype())?,
        (Act::Gelu, Saved::Input(x)) => gelu::gelu_grad(x, g),
        (Act::Silu, Saved::Input(x)) => silu::silu_grad(x, g),
        (Act::Sigmoid, Saved::Output(y)) => g * (y * (1.0 - y)?)?,
        (Act::Tanh, Saved::Output(y)) => g * (1.0 - y.sqr()?)?,
        _ => candle_core::bail!("backward: {a:?} kept the wrong state"),
    }
}

/// LayerNorm over `dim` with weight `w`: the gradient through the affine
/// part, then the normalisation.
fn norm_grad(x: &Tensor, dim: usize, w: &Tensor, eps: f64, g: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && g.dtype() == x.dtype() {
        // the weight's product inside the normalisation's pass
        return layernorm::layer_norm_grad(x, dim, eps, w, g);
    }
    let gn = if dim == 1 && x.rank() == 4 {
        layers::channel_affine(g, Some(w), None)?
    } else {
        let mut shape = vec![1; x.rank()];
        shape[dim] = w.dim(0)?;
        g.broadcast_mul(&w.reshape(shape.as_slice())?)?
    };
    layernorm::normalize_grad(x, dim, eps, &gn)
}

fn layer_grad(op: &Op, saved: &Saved, g: &Tensor) -> Result<Tensor> {
    Ok(match (op, saved) {
        (
            Op::Conv {
                w,
                stride,
                pad,
                groups,
                ..
            },
            Saved::Shape(dims),
        ) => grouped::conv2d_grouped_grad_input(dims, w, g, (*stride, *pad, *groups))?,
        (Op::LayerNorm2d { w, eps, .. }, Saved::Input(x)) => norm_grad(x, 1, w, *eps, g)?,
        (Op::LayerNorm { w, eps, .. }, Saved::Input(x)) => norm_grad(x, x.rank() - 1, w, *eps, g)?,
        (Op::Act(a), s) => act_grad(*a, s, g)?,
        (Op::Linear { w, .. }, Saved::Shape(_)) => linear_grad(g, w)?,
        (Op::Residual { body }, Saved::Residual(kept)) => {
            layers::add(g, &input_grad(body, kept, g)?)?
        }
        (Op::SqueezeExcite { w1, w2, act, .. }, Saved::SqueezeExcite { x, hidden, gate }) => {
            let (_, _, h, w) = x.dims4()?;
            // y = x * gate: through x directly (g * gate), and through the
            // gate (dpool, the same for every pixel of a plane)
            let dgate = (channel::plane_mean(g, Some(x))? * (h * w) as f64)?;
            let dz2 = (dgate * (gate * (1.0 - gate)?)?)?;
            let da1 = dz2.matmul(w2)?;
            let dz1 = act_grad(*act, &Saved::Input(hidden.clone()), &da1)?;
            let dpool = (dz1.matmul(w1)? / (h * w) as f64)?;
            layers::plane_affine(g, Some(gate), Some(&dpool))?
        }
        (Op::Tokens { .. }, Saved::Shape(dims)) => {
            let &[n, d, h, w] = dims.as_slice() else {
                candle_core::bail!("backward: tokens from a {dims:?} map")
            };
            g.narrow(1, 1, h * w)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n, d, h, w))?
        }
        (
            Op::Attention {
                in_w, out_w, heads, ..
            },
            Saved::Attention { qkv, att },
        ) => {
            let d_o = linear_grad(g, out_w)?;
            let dqkv = attention::attention_grad(qkv, att, &d_o, *heads)?;
            linear_grad(&dqkv, in_w)?
        }
        (Op::Pool, Saved::Shape(dims)) => {
            let &[n, c, h, w] = dims.as_slice() else {
                candle_core::bail!("backward: pooling a {dims:?} map")
            };
            (g.reshape((n, c, 1, 1))? / (h * w) as f64)?
                .broadcast_as((n, c, h, w))?
                .contiguous()?
        }
        (Op::ClassToken, Saved::Shape(dims)) => {
            let &[n, s, d] = dims.as_slice() else {
                candle_core::bail!("backward: the class token of {dims:?}")
            };
            let rest = Tensor::zeros((n, s - 1, d), g.dtype(), g.device())?;
            Tensor::cat(&[&g.unsqueeze(1)?, &rest], 1)?
        }
        (Op::Tap(_), _) => g.clone(),
        (op, _) => candle_core::bail!("backward: {} kept the wrong state", name(op)),
    })
}

/// The layer's kind, for errors.
fn name(op: &Op) -> &'static str {
    match op {
        Op::Conv { .. } => "a convolution",
        Op::LayerNorm2d { .. } | Op::LayerNorm { .. } => "a LayerNorm",
        Op::Act(_) => "an activation",
        Op::Linear { .. } => "a linear layer",
        Op::Residual { .. } => "a residual block",
        Op::SqueezeExcite { .. } => "a squeeze-excitation",
        Op::Tokens { .. } => "the tokens",
        Op::Attention { .. } => "an attention",
        Op::Pool => "the pooling",
        Op::ClassToken => "the class token",
        Op::Tap(_) => "a tap",
    }
}

/// The logits of `ops` for `x` and the gradient w.r.t. `x` of
/// `sum(logits * seed)`, where `seed(logits)` gives the gradient at the
/// logits. `ops`' tensors are converted to `x`'s dtype if they differ.
pub fn logits_and_grad(
    ops: &[Op],
    x: &Tensor,
    seed: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let converted;
    let ops = if x.dtype() == DType::F32 {
        ops
    } else {
        converted = layers::to_dtype(ops, x.dtype())?;
        &converted
    };
    let (logits, kept) = layers::run_kept(ops, &x.detach())?;
    let g = seed(&logits)?;
    let dx = input_grad(ops, &kept, &g)?;
    Ok((logits, dx))
}

/// The gradient at the logits of the mean cross-entropy over labels `y`:
/// `(softmax(logits) - onehot) / N`, with the loss.
pub fn cross_entropy_seed(logits: &Tensor, onehot: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = logits.dim(0)?;
    let p = candle_nn::ops::softmax_last_dim(logits)?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let loss = ((logp * onehot)?.sum_all()? * (-1.0 / n as f64))?;
    let g = ((p - onehot)? / n as f64)?;
    Ok((loss, g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tap::Tap;
    use candle_core::{Device, Var};

    fn ramp(n: usize, f: impl Fn(usize) -> f32) -> Tensor {
        Tensor::from_vec(
            (0..n).map(f).collect::<Vec<f32>>(),
            (2, n / 2),
            &Device::Cpu,
        )
        .unwrap()
    }

    /// Every activation's formula against candle's autograd over its
    /// forward (the families' fixtures cover the other layers).
    #[test]
    fn activation_gradients_match_autograd() {
        let x = ramp(64, |i| (i as f32 - 31.5) / 8.0);
        let g = ramp(64, |i| ((i * 37) % 11) as f32 / 5.0 - 1.0);
        for a in [Act::Relu, Act::Gelu, Act::Silu, Act::Sigmoid, Act::Tanh] {
            let ops = [Op::Act(a)];
            let (_, kept) = layers::run_kept(&ops, &x).unwrap();
            let got: Vec<f32> = input_grad(&ops, &kept, &g)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let v = Var::from_tensor(&x).unwrap();
            let y = layers::run(&ops, v.as_tensor(), &[Tap::Logits])
                .unwrap()
                .pop()
                .unwrap();
            let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let want: Vec<f32> = grads
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (i, (a_, b_)) in got.iter().zip(&want).enumerate() {
                assert!((a_ - b_).abs() <= 1e-6, "{a:?} at {i}: {a_} vs {b_}");
            }
            assert!(got.iter().any(|v| *v != 0.0), "{a:?}: all zero");
        }
    }
}
