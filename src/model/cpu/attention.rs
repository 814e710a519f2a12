//! The core of multi-head self-attention on the CPU as one pass (a ViT's
//! inference): for every (image, head) pair in parallel, the scores `q k^T`
//! read straight out of the stacked `[N, S, 3D]` projections (no permuted
//! copies of q, k and v), the softmax of `scale * scores` in place, and
//! `att v` written straight into its columns of the `[N, S, D]` output (no
//! transposed copy). Each gemm is sequential; the pairs keep the threads
//! busy. The attention weights can be kept for a backward pass.

use candle_core::{Result, Tensor, WithDType};
use rayon::prelude::*;

/// The element types the kernel runs on, with their `exp`.
trait Real: WithDType {
    fn exp(self) -> Self;
}

impl Real for f32 {
    fn exp(self) -> f32 {
        f32::exp(self)
    }
}

impl Real for f64 {
    fn exp(self) -> f64 {
        f64::exp(self)
    }
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
                let a = std::slice::from_raw_parts_mut(att, s * s);
                for row in a.chunks_exact_mut(s) {
                    let m = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
                    let mut sum = 0f64;
                    for v in row.iter_mut() {
                        let e = T::from_f64((v.to_f64() - m) * scale).exp();
                        sum += e.to_f64();
                        *v = e;
                    }
                    let inv = 1.0 / sum;
                    for v in row.iter_mut() {
                        *v = T::from_f64(v.to_f64() * inv);
                    }
                }
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
                let dsc = std::slice::from_raw_parts_mut(da, s * s);
                for (gr, ar) in dsc.chunks_exact_mut(s).zip(a.chunks_exact(s)) {
                    let dot: f64 = gr
                        .iter()
                        .zip(ar)
                        .map(|(g, y)| g.to_f64() * y.to_f64())
                        .sum();
                    for (g, y) in gr.iter_mut().zip(ar) {
                        *g = T::from_f64(y.to_f64() * (g.to_f64() - dot) * scale);
                    }
                }
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
