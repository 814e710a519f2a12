//! A pointwise MLP over the channels of an NCHW map, `W2 act(W1 x + b1) +
//! b2` (ConvNeXt's block after its LayerNorm: two 1x1 convolutions around
//! a GELU), in float32 on the CPU, one block of pixels at a time: the
//! hidden map, four times wider than the input, stays in the cache instead
//! of being written out, read back for the activation, written and read
//! again (the same sums as the two convolutions, in the same order). With
//! `keep`, the hidden map before the activation is also written out, once,
//! for the input gradient. Not differentiable by candle: for tensors no
//! gradient flows through.

use super::simd::widest;
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Pixels per block: the hidden block (`4C x 256` values) fits in L2 for
/// ConvNeXt's widths up to 384, and a gemm of 256 columns runs at full
/// speed.
const BLOCK: usize = 256;

/// Whether [`pointwise_mlp`] serves this input: float32 on the CPU, no
/// gradient, planes of at least 64 pixels (smaller ones are better served
/// by the convolution's batching of several images per gemm).
pub fn serves(x: &Tensor) -> bool {
    x.device().is_cpu()
        && x.dtype() == DType::F32
        && !x.track_op()
        && x.rank() == 4
        && x.dims()[2] * x.dims()[3] >= 64
}

/// `W2 act(W1 x + b1) + b2` per pixel of `x` `[N, C, H, W]`; `w1` `[D, C]`
/// (or `[D, C, 1, 1]`), `b1` `[D]`, `w2` `[C2, D]` (or 4-D), `b2` `[C2]`;
/// `act` elementwise. Returns the output `[N, C2, H, W]` and, with `keep`,
/// the hidden map before the activation `[N, D, H, W]`.
pub fn pointwise_mlp<F: Fn(f32) -> f32 + Copy + Sync>(
    x: &Tensor,
    (w1, b1): (&Tensor, &Tensor),
    act: F,
    (w2, b2): (&Tensor, &Tensor),
    keep: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (n, c, h, w) = x.dims4()?;
    let d = w1.dim(0)?;
    let c2 = w2.dim(0)?;
    let w1 = w1.reshape((d, ()))?;
    let w2 = w2.reshape((c2, ()))?;
    if w1.dims() != [d, c] || w2.dims() != [c2, d] || b1.dims() != [d] || b2.dims() != [c2] {
        candle_core::bail!(
            "pointwise MLP: {:?} through {:?} + {:?}, {:?} + {:?}",
            x.dims(),
            w1.dims(),
            b1.dims(),
            w2.dims(),
            b2.dims()
        )
    }
    if !serves(x)
        || [&w1, b1, &w2, b2]
            .iter()
            .any(|t| t.dtype() != DType::F32 || t.track_op())
    {
        candle_core::bail!("pointwise MLP: float32 CPU tensors without gradient only")
    }
    let ts = [x, &w1, b1, &w2, b2].map(|t| t.contiguous());
    let [xt, w1t, b1t, w2t, b2t] = ts;
    let (xt, w1t, b1t, w2t, b2t) = (xt?, w1t?, b1t?, w2t?, b2t?);
    let held = [&xt, &w1t, &b1t, &w2t, &b2t].map(|t| t.storage_and_layout());
    let mut v: Vec<&[f32]> = Vec::with_capacity(5);
    for (st, l) in &held {
        let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&**st, l.contiguous_offsets()) else {
            candle_core::bail!("pointwise MLP: not a contiguous CPU tensor")
        };
        v.push(&cpu.as_slice::<f32>()?[a..b]);
    }
    let (y, hidden) = forward(
        v[0],
        (n, c, h * w),
        (v[1], v[2], d),
        act,
        (v[3], v[4], c2),
        keep,
    );
    drop(v);
    drop(held);
    let y = Tensor::from_vec(y, (n, c2, h, w), x.device())?;
    let hidden = hidden
        .map(|v| Tensor::from_vec(v, (n, d, h, w), x.device()))
        .transpose()?;
    Ok((y, hidden))
}

/// A pointer that may cross threads; every task writes its own columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
unsafe impl Send for Out {}
unsafe impl Sync for Out {}
impl Out {
    /// The pointer (a method, so that closures capture the whole `Out`).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

fn forward<F: Fn(f32) -> f32 + Copy + Sync>(
    x: &[f32],
    (n, c, hw): (usize, usize, usize),
    (w1, b1, d): (&[f32], &[f32], usize),
    act: F,
    (w2, b2, c2): (&[f32], &[f32], usize),
    keep: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut y: Vec<f32> = Vec::with_capacity(n * c2 * hw);
    let mut kept: Option<Vec<f32>> = keep.then(|| Vec::with_capacity(n * d * hw));
    let yp = Out(y.as_mut_ptr());
    let kp = kept.as_mut().map(|k| Out(k.as_mut_ptr()));
    let blocks = hw.div_ceil(BLOCK);
    (0..n * blocks).into_par_iter().for_each_init(
        || vec![0f32; d * BLOCK.min(hw)],
        |hid, t| {
            let (img, p0) = (t / blocks, (t % blocks) * BLOCK);
            let p = BLOCK.min(hw - p0);
            let hid = &mut hid[..d * p];
            // hidden = b1 + W1 x[:, p0..p0+p]
            for (r, row) in hid.chunks_exact_mut(p).enumerate() {
                row.fill(b1[r]);
            }
            let xb = &x[img * c * hw + p0..];
            // SAFETY: lhs `[d, c]` and rhs `[c, p]` (row stride hw) lie in
            // w1 and x (the last row ends at img*c*hw + (c-1)*hw + p0 + p,
            // inside this image); dst is this task's scratch.
            unsafe {
                gemm_f32(
                    (d, p, c),
                    (hid.as_mut_ptr(), p),
                    true,
                    (w1.as_ptr(), c),
                    (xb.as_ptr(), hw),
                );
            }
            if let Some(kp) = kp {
                for (r, row) in hid.chunks_exact(p).enumerate() {
                    // SAFETY: row r of this image's hidden map, columns
                    // p0..p0+p: written by this task only, inside n*d*hw.
                    unsafe {
                        let dst = kp.ptr().add((img * d + r) * hw + p0);
                        std::ptr::copy_nonoverlapping(row.as_ptr(), dst, p);
                    }
                }
            }
            act_in_place(hid, act);
            // y[:, p0..p0+p] = b2 + W2 hidden
            // SAFETY: rows of this image's output, columns p0..p0+p: this
            // task's alone, inside n*c2*hw; written (the bias) before the
            // gemm reads them.
            unsafe {
                let yb = yp.ptr().add(img * c2 * hw + p0);
                for (r, &b) in b2.iter().enumerate() {
                    let row = yb.add(r * hw);
                    for i in 0..p {
                        row.add(i).write(b);
                    }
                }
                gemm_f32(
                    (c2, p, d),
                    (yb, hw),
                    true,
                    (w2.as_ptr(), d),
                    (hid.as_ptr(), p),
                );
            }
        },
    );
    // SAFETY: the tasks cover every (image, pixel block) and write every
    // row of each: all of y, and all of the hidden map when kept.
    unsafe {
        y.set_len(n * c2 * hw);
        if let Some(k) = kept.as_mut() {
            k.set_len(n * d * hw);
        }
    }
    (y, kept)
}

/// The gradient w.r.t. `x` of [`pointwise_mlp`]'s output given its
/// gradient `g` `[N, C2, H, W]` and the kept hidden map `pre` `[N, D, H, W]`
/// (before the activation), `act_grad(pre, g_hidden)` the activation's
/// backward: `W1^T (act'(pre) * W2^T g)` per block of pixels, the hidden
/// gradient never written out.
pub fn pointwise_mlp_grad<F: Fn(f32, f32) -> f32 + Copy + Sync>(
    pre: &Tensor,
    g: &Tensor,
    w1: &Tensor,
    act_grad: F,
    w2: &Tensor,
) -> Result<Tensor> {
    let (n, d, h, w) = pre.dims4()?;
    let c2 = w2.dim(0)?;
    let w1 = w1.reshape((d, ()))?;
    let w2 = w2.reshape((c2, ()))?;
    let c = w1.dim(1)?;
    if g.dims() != [n, c2, h, w] || w2.dims() != [c2, d] {
        candle_core::bail!(
            "pointwise MLP gradient: {:?} at the output, {:?} kept, weights {:?} {:?}",
            g.dims(),
            pre.dims(),
            w1.dims(),
            w2.dims()
        )
    }
    let all = [pre, g, &w1, &w2];
    if all
        .iter()
        .any(|t| !t.device().is_cpu() || t.dtype() != DType::F32 || t.track_op())
    {
        candle_core::bail!("pointwise MLP gradient: float32 CPU tensors without gradient only")
    }
    // the weights transposed once (small beside the maps): both gemms then
    // read a row-major left-hand side
    let ts = [
        pre.contiguous()?,
        g.contiguous()?,
        w1.t()?.contiguous()?,
        w2.t()?.contiguous()?,
    ];
    let held: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut v: Vec<&[f32]> = Vec::with_capacity(4);
    for (st, l) in &held {
        let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&**st, l.contiguous_offsets()) else {
            candle_core::bail!("pointwise MLP gradient: not a contiguous CPU tensor")
        };
        v.push(&cpu.as_slice::<f32>()?[a..b]);
    }
    let dx = backward(v[0], v[1], (v[2], v[3]), act_grad, (n, c, d, c2, h * w));
    drop(v);
    drop(held);
    Tensor::from_vec(dx, (n, c, h, w), pre.device())
}

/// `w1t` `[C, D]` and `w2t` `[D, C2]`: the weights transposed.
fn backward<F: Fn(f32, f32) -> f32 + Copy + Sync>(
    pre: &[f32],
    g: &[f32],
    (w1t, w2t): (&[f32], &[f32]),
    act_grad: F,
    (n, c, d, c2, hw): (usize, usize, usize, usize, usize),
) -> Vec<f32> {
    let mut dx: Vec<f32> = Vec::with_capacity(n * c * hw);
    let dp = Out(dx.as_mut_ptr());
    let blocks = hw.div_ceil(BLOCK);
    (0..n * blocks).into_par_iter().for_each_init(
        || vec![0f32; d * BLOCK.min(hw)],
        |gh, t| {
            let (img, p0) = (t / blocks, (t % blocks) * BLOCK);
            let p = BLOCK.min(hw - p0);
            let gh = &mut gh[..d * p];
            let gb = &g[img * c2 * hw + p0..];
            // gh = W2^T g[:, p0..p0+p]
            // SAFETY: g's block rows lie inside this image; dst is scratch.
            unsafe {
                gemm_f32(
                    (d, p, c2),
                    (gh.as_mut_ptr(), p),
                    false,
                    (w2t.as_ptr(), c2),
                    (gb.as_ptr(), hw),
                );
            }
            let pb = &pre[img * d * hw + p0..];
            act_grad_in_place(gh, p, pb, hw, act_grad);
            // dx[:, p0..p0+p] = W1^T gh
            // SAFETY: dst rows of this image, columns p0..p0+p: this task's
            // alone, inside n*c*hw, written (not read) by the gemm.
            unsafe {
                let db = dp.ptr().add(img * c * hw + p0);
                gemm_f32(
                    (c, p, d),
                    (db, hw),
                    false,
                    (w1t.as_ptr(), d),
                    (gh.as_ptr(), p),
                );
            }
        },
    );
    // SAFETY: the tasks cover every (image, pixel block), every row of each.
    unsafe { dx.set_len(n * c * hw) };
    dx
}

/// `gh[r][i] = act_grad(pre[r * stride + i], gh[r][i])` over the hidden
/// block's rows of `p` values.
#[inline(always)]
fn act_grad_rows<F: Fn(f32, f32) -> f32>(
    gh: &mut [f32],
    p: usize,
    pre: &[f32],
    stride: usize,
    f: F,
) {
    for (r, row) in gh.chunks_exact_mut(p).enumerate() {
        for (o, &v) in row.iter_mut().zip(&pre[r * stride..r * stride + p]) {
            *o = f(v, *o);
        }
    }
}

widest! {
    /// [`act_grad_rows`] compiled for the widest vector instructions the
    /// CPU has (`f` is inlined into the loop, which vectorises).
    fn act_grad_in_place[F: Fn(f32, f32) -> f32](
        gh: &mut [f32],
        p: usize,
        pre: &[f32],
        stride: usize,
        f: F,
    ) => act_grad_rows
}

/// `v = act(v)` over the hidden block.
#[inline(always)]
fn act_values<F: Fn(f32) -> f32>(v: &mut [f32], f: F) {
    v.iter_mut().for_each(|x| *x = f(*x));
}

widest! {
    /// [`act_values`] compiled for the widest vector instructions the CPU
    /// has (`act` is inlined into the loop, which vectorises).
    fn act_in_place[F: Fn(f32) -> f32](v: &mut [f32], act: F) => act_values
}

/// `dst` `[m, n]` (row stride given) (+)= `lhs` `[m, k]` (row-major, row
/// stride given) * `rhs` `[k, n]` (row stride given), one thread.
///
/// # Safety
/// Every element addressed must lie inside its allocation, and `dst`'s be
/// written by no one else meanwhile (and initialised when accumulating).
unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    accumulate: bool,
    (lhs, lhs_rs): (*const f32, usize),
    (rhs, rhs_rs): (*const f32, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
        1,
        rhs_rs as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::gelu::{gelu32, gelu_grad32};
    use candle_core::Device;

    /// Against the two convolutions and the activation as separate ops:
    /// planes of one partial block, of several (the last partial), the
    /// hidden map kept.
    #[test]
    fn matches_separate_ops() {
        let dev = Device::Cpu;
        for (n, c, d, c2, h, w) in [(2, 5, 20, 5, 9, 8), (3, 8, 32, 6, 23, 29)] {
            let x = Tensor::randn(0f32, 1., (n, c, h, w), &dev).unwrap();
            let w1 = Tensor::randn(0f32, 0.3, (d, c, 1, 1), &dev).unwrap();
            let b1 = Tensor::randn(0f32, 1., d, &dev).unwrap();
            let w2 = Tensor::randn(0f32, 0.3, (c2, d, 1, 1), &dev).unwrap();
            let b2 = Tensor::randn(0f32, 1., c2, &dev).unwrap();
            let conv = |x: &Tensor, w: &Tensor, b: &Tensor| {
                x.conv2d(w, 0, 1, 1, 1)
                    .unwrap()
                    .broadcast_add(&b.reshape((1, (), 1, 1)).unwrap())
                    .unwrap()
            };
            let pre = conv(&x, &w1, &b1);
            let want = conv(&pre.gelu_erf().unwrap(), &w2, &b2);
            let (got, kept) = pointwise_mlp(&x, (&w1, &b1), gelu32, (&w2, &b2), true).unwrap();
            let maxd = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .and_then(|t| t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
                    .unwrap()
            };
            assert!(maxd(&got, &want) < 1e-4, "{}", maxd(&got, &want));
            // the input gradient against candle's autograd through the
            // separate ops
            let xv = candle_core::Var::from_tensor(&x).unwrap();
            let r = Tensor::randn(0f32, 1., want.dims(), &dev).unwrap();
            let out = conv(
                &conv(xv.as_tensor(), &w1, &b1).gelu_erf().unwrap(),
                &w2,
                &b2,
            );
            let grads = (&out * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let dx = pointwise_mlp_grad(&pre, &r, &w1, gelu_grad32, &w2).unwrap();
            let gd = maxd(&dx, grads.get(&xv).unwrap());
            assert!(gd < 1e-4, "gradient {gd}");
            assert!(maxd(&kept.unwrap(), &pre) < 1e-5);
            let (again, none) = pointwise_mlp(&x, (&w1, &b1), gelu32, (&w2, &b2), false).unwrap();
            assert!(none.is_none());
            assert_eq!(maxd(&again, &got), 0.0);
        }
        // refused: a gradient, f64, mismatched shapes
        let x = Tensor::randn(0f32, 1., (1, 4, 8, 8), &dev).unwrap();
        let w1 = Tensor::zeros((8, 4), DType::F32, &dev).unwrap();
        let b1 = Tensor::zeros(8, DType::F32, &dev).unwrap();
        let w2 = Tensor::zeros((4, 8), DType::F32, &dev).unwrap();
        let b2 = Tensor::zeros(4, DType::F32, &dev).unwrap();
        let g = gelu32;
        assert!(pointwise_mlp(&x, (&w1, &b1), g, (&w2, &b2), false).is_ok());
        assert!(pointwise_mlp(&x, (&w2, &b2), g, (&w1, &b1), false).is_err());
        let v = candle_core::Var::from_tensor(&x).unwrap();
        assert!(pointwise_mlp(v.as_tensor(), (&w1, &b1), g, (&w2, &b2), false).is_err());
        let x64 = x.to_dtype(DType::F64).unwrap();
        assert!(pointwise_mlp(&x64, (&w1, &b1), g, (&w2, &b2), false).is_err());
    }
}
