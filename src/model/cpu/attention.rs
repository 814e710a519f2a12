//! The core of multi-head self-attention on the CPU as one pass (a ViT's
//! inference): for every (image, head) pair in parallel, the scores `q k^T`
//! read straight out of the stacked `[N, S, 3D]` projections (no permuted
//! copies of q, k and v), the softmax of `scale * scores` in place, and
//! `att v` written straight into its columns of the `[N, S, D]` output (no
//! transposed copy). Each gemm is sequential; the pairs keep the threads
//! busy. The attention weights can be kept for a backward pass.

use candle_core::{Result, Tensor, WithDType};
use rayon::prelude::*;

/// The element types the kernel runs on, with the softmax of a block of
/// score rows and its backward.
trait Real: WithDType {
    /// `softmax(scale * row)` of each row of `s` values, in place.
    fn softmax_rows(a: &mut [Self], s: usize, scale: f64);
    /// The softmax's backward in place, row by row: `g = scale * y * (g -
    /// <g, y>)` for the weights `y`.
    fn softmax_grad_rows(g: &mut [Self], y: &[Self], s: usize, scale: f64);
}

/// float32: the rows vectorised (16 partial maxima and sums, GELU's
/// branch-free `exp` for the non-positive exponents), compiled for the
/// widest vector instructions the CPU has.
impl Real for f32 {
    fn softmax_rows(a: &mut [f32], s: usize, scale: f64) {
        softmax_rows32(a, s, scale as f32)
    }
    fn softmax_grad_rows(g: &mut [f32], y: &[f32], s: usize, scale: f64) {
        softmax_grad_rows32(g, y, s, scale as f32)
    }
}

/// float64: plain loops, `exp` from the standard library.
impl Real for f64 {
    fn softmax_rows(a: &mut [f64], s: usize, scale: f64) {
        for row in a.chunks_exact_mut(s) {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v));
            let mut sum = 0f64;
            for v in row.iter_mut() {
                *v = ((*v - m) * scale).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
    fn softmax_grad_rows(g: &mut [f64], y: &[f64], s: usize, scale: f64) {
        for (gr, yr) in g.chunks_exact_mut(s).zip(y.chunks_exact(s)) {
            let dot: f64 = gr.iter().zip(yr).map(|(g, y)| g * y).sum();
            for (g, y) in gr.iter_mut().zip(yr) {
                *g = y * (*g - dot) * scale;
            }
        }
    }
}

/// Lanes of the float32 reductions: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// `sum(f(i))` for `i < n` in [`LANES`] partial sums, so that it vectorises.
#[inline(always)]
fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let full = n / LANES * LANES;
    for b in (0..full).step_by(LANES) {
        for (j, a) in acc.iter_mut().enumerate() {
            *a += f(b + j);
        }
    }
    acc.iter().sum::<f32>() + (full..n).map(f).sum::<f32>()
}

#[inline(always)]
fn softmax_rows32_body(a: &mut [f32], s: usize, scale: f32) {
    for row in a.chunks_exact_mut(s) {
        let mut mx = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, &v) in mx.iter_mut().zip(c) {
                *m = if v > *m { v } else { *m };
            }
        }
        let m = chunks
            .remainder()
            .iter()
            .chain(&mx)
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        row.iter_mut()
            .for_each(|v| *v = super::gelu::exp32((*v - m) * scale));
        let inv = 1.0 / lane_sum(row.len(), |i| row[i]);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

super::simd::widest! {
    fn softmax_rows32[](a: &mut [f32], s: usize, scale: f32) => softmax_rows32_body
}

#[inline(always)]
fn softmax_grad_rows32_body(g: &mut [f32], y: &[f32], s: usize, scale: f32) {
    for (gr, yr) in g.chunks_exact_mut(s).zip(y.chunks_exact(s)) {
        let dot = lane_sum(gr.len(), |i| gr[i] * yr[i]);
        for (g, y) in gr.iter_mut().zip(yr) {
            *g = y * (*g - dot) * scale;
        }
    }
}

super::simd::widest! {
    fn softmax_grad_rows32[](g: &mut [f32], y: &[f32], s: usize, scale: f32) => softmax_grad_rows32_body
}

/// `softmax(q k^T / sqrt(hd)) v` per head for the stacked projections
/// `qkv` `[N, S, 3D]` (q, k, v each `[S, heads, hd]` within a row), as
/// `[N, S, D]`; with `keep`, also the attention weights `[N, heads, S, S]`.
pub fn attention(qkv: &Tensor, heads: usize, keep: bool) -> Result<(Tensor, Option<Tensor>)> {
    let (n, s, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 {
        candle_core::bail!("attention: {d3} projections do not split into q, k, v of {heads} heads")
    }
    let dims = (n, s, d3 / 3, heads);
    let qkv = qkv.contiguous()?;
    let dev = qkv.device().clone();
    let (st, l) = qkv.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*st, l.contiguous_offsets()) else {
        candle_core::bail!("attention: not a contiguous CPU tensor")
    };
    macro_rules! run {
        ($t:ty) => {{
            let (o, att) = forward::<$t>(&cpu.as_slice::<$t>()?[a..b], dims, keep);
            let o = Tensor::from_vec(o, (n, s, d3 / 3), &dev)?;
            let att = match att {
                Some(a) => Some(Tensor::from_vec(a, (n, heads, s, s), &dev)?),
                None => None,
            };
            Ok((o, att))
        }};
    }
    match qkv.dtype() {
        candle_core::DType::F32 => run!(f32),
        candle_core::DType::F64 => run!(f64),
        t => candle_core::bail!("attention: {t:?} is not f32 or f64"),
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer `i` elements on (within the allocation, by the caller).
    fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

fn forward<T: Real>(
    qkv: &[T],
    (n, s, d, heads): (usize, usize, usize, usize),
    keep: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    let hd = d / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![T::zero(); n * s * d];
    let mut kept = keep.then(|| vec![T::zero(); n * heads * s * s]);
    let out_p = SendPtr(out.as_mut_ptr());
    let att_p = kept.as_mut().map(|a| SendPtr(a.as_mut_ptr()));
    let rs = 3 * d;
    (0..n * heads)
        .into_par_iter()
        .for_each_init(Vec::<T>::new, |scratch, nh| {
            let (b, h) = (nh / heads, nh % heads);
            let base = b * s * rs + h * hd;
            let (q, k, v) = (&qkv[base..], &qkv[base + d..], &qkv[base + 2 * d..]);
            // the pair's [S, S] scores: its part of the kept weights, or scratch
            let att: *mut T = match att_p {
                Some(p) => p.at(nh * s * s),
                None => {
                    scratch.resize(s * s, T::zero());
                    scratch.as_mut_ptr()
                }
            };
            debug_assert!((s - 1) * rs + hd <= q.len() && (s - 1) * rs + hd <= v.len());
            // SAFETY: q, k, v are read within qkv (the last row of the last
            // image ends at its end); att is this pair's own S*S block; the
            // output block (rows of image b, columns of head h) is written by
            // this pair only.
            unsafe {
                gemm_raw(
                    (s, s, hd),
                    (att, s, 1),
                    (q.as_ptr(), rs, 1),
                    (k.as_ptr(), 1, rs),
                );
                T::softmax_rows(std::slice::from_raw_parts_mut(att, s * s), s, scale);
                gemm_raw(
                    (s, hd, s),
                    (out_p.at(b * s * d + h * hd), d, 1),
                    (att, s, 1),
                    (v.as_ptr(), rs, 1),
                );
            }
        });
    (out, kept)
}

/// The gradient w.r.t. the stacked projections `qkv` `[N, S, 3D]` of
/// [`attention`], given the attention weights it kept `att` `[N, heads, S,
/// S]` and the gradient `d_o` `[N, S, D]` at its output: per (image, head)
/// pair, `d att = d_o v^T`, `dv = att^T d_o`, the softmax's backward in
/// place, then `dq = scale d_scores k` and `dk = scale d_scores^T q`, each
/// written straight into its columns of the result.
pub fn attention_grad(qkv: &Tensor, att: &Tensor, d_o: &Tensor, heads: usize) -> Result<Tensor> {
    let (n, s, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 || att.dims() != [n, heads, s, s] {
        candle_core::bail!(
            "attention backward: projections {:?} and weights {:?} for {heads} heads",
            qkv.dims(),
            att.dims()
        )
    }
    if d_o.dims() != [n, s, d3 / 3] {
        candle_core::bail!("attention backward: output gradient {:?}", d_o.dims())
    }
    let dims = (n, s, d3 / 3, heads);
    let (qkv, att, d_o) = (qkv.contiguous()?, att.contiguous()?, d_o.contiguous()?);
    let dev = qkv.device().clone();
    let (s1, l1) = qkv.storage_and_layout();
    let (s2, l2) = att.storage_and_layout();
    let (s3, l3) = d_o.storage_and_layout();
    let parts =
        [(&*s1, l1), (&*s2, l2), (&*s3, l3)].map(|(st, l)| match (st, l.contiguous_offsets()) {
            (candle_core::Storage::Cpu(c), Some(r)) => Some((c, r)),
            _ => None,
        });
    let [Some((c1, r1)), Some((c2, r2)), Some((c3, r3))] = parts else {
        candle_core::bail!("attention backward: not contiguous CPU tensors")
    };
    macro_rules! run {
        ($t:ty) => {{
            let g = backward::<$t>(
                &c1.as_slice::<$t>()?[r1.0..r1.1],
                &c2.as_slice::<$t>()?[r2.0..r2.1],
                &c3.as_slice::<$t>()?[r3.0..r3.1],
                dims,
            );
            Tensor::from_vec(g, (n, s, d3), &dev)
        }};
    }
    match qkv.dtype() {
        candle_core::DType::F32 => run!(f32),
        candle_core::DType::F64 => run!(f64),
        t => candle_core::bail!("attention backward: {t:?} is not f32 or f64"),
    }
}

/// One sequential gemm on raw parts: `dst` `[m, n]` = `lhs` `[m, k]` *
/// `rhs` `[k, n]`, each given by (pointer, row stride, column stride).
///
/// # Safety
/// Every element addressed must lie inside its allocation; `dst` must not
/// be written by anyone else meanwhile.
unsafe fn gemm_raw<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        false,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        T::zero(),
        T::one(),
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

fn backward<T: Real>(
    qkv: &[T],
    att: &[T],
    d_o: &[T],
    (n, s, d, heads): (usize, usize, usize, usize),
) -> Vec<T> {
    let hd = d / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let rs = 3 * d;
    let mut dqkv = vec![T::zero(); n * s * rs];
    let dst = SendPtr(dqkv.as_mut_ptr());
    (0..n * heads)
        .into_par_iter()
        .for_each_init(Vec::<T>::new, |scratch, nh| {
            let (b, h) = (nh / heads, nh % heads);
            let base = b * s * rs + h * hd;
            let (q, k, v) = (&qkv[base..], &qkv[base + d..], &qkv[base + 2 * d..]);
            let a = &att[nh * s * s..][..s * s];
            let go = &d_o[b * s * d + h * hd..];
            scratch.resize(s * s, T::zero());
            let da = scratch.as_mut_ptr();
            // SAFETY: reads stay inside qkv, att and d_o (each pair's last
            // row ends within them); `da` is this task's scratch; the
            // columns of image b and head h in dqkv are written by this pair
            // only.
            unsafe {
                gemm_raw(
                    (s, s, hd),
                    (da, s, 1),
                    (go.as_ptr(), d, 1),
                    (v.as_ptr(), 1, rs),
                );
                gemm_raw(
                    (s, hd, s),
                    (dst.at(base + 2 * d), rs, 1),
                    (a.as_ptr(), 1, s),
                    (go.as_ptr(), d, 1),
                );
                T::softmax_grad_rows(std::slice::from_raw_parts_mut(da, s * s), a, s, scale);
                gemm_raw(
                    (s, hd, s),
                    (dst.at(base), rs, 1),
                    (da, s, 1),
                    (k.as_ptr(), rs, 1),
                );
                gemm_raw(
                    (s, hd, s),
                    (dst.at(base + d), rs, 1),
                    (da, 1, s),
                    (q.as_ptr(), rs, 1),
                );
            }
        });
    dqkv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::testing::max_diff;
    use candle_core::{DType, Device};

    /// float32's vectorised softmax rows (a full block of lanes and a
    /// remainder: 37 tokens) against float64's plain loops, forward and
    /// backward, and the weights' rows summing to 1.
    #[test]
    fn float32_rows_match_float64() {
        let dev = Device::Cpu;
        let (n, s, heads, hd) = (2, 37, 3, 4);
        let qkv = (Tensor::randn(0f64, 1., (n, s, 3 * heads * hd), &dev).unwrap() * 2.0).unwrap();
        let d_o = Tensor::randn(0f64, 1., (n, s, heads * hd), &dev).unwrap();
        let (o64, a64) = attention(&qkv, heads, true).unwrap();
        let a64 = a64.unwrap();
        let g64 = attention_grad(&qkv, &a64, &d_o, heads).unwrap();
        let f32_ = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let (o32, a32) = attention(&f32_(&qkv), heads, true).unwrap();
        let a32 = a32.unwrap();
        let g32 = attention_grad(&f32_(&qkv), &a32, &f32_(&d_o), heads).unwrap();
        assert!(max_diff(&f32_(&o64), &o32) < 1e-5);
        assert!(max_diff(&f32_(&a64), &a32) < 1e-6);
        assert!(max_diff(&f32_(&g64), &g32) < 1e-5);
        let rows = a32.sum(3).unwrap();
        assert!(max_diff(&rows, &rows.ones_like().unwrap()) < 1e-6);
        assert!(
            g32.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 1.0
        );
    }
}
