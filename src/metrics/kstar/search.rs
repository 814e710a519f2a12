//! The two exact k* back ends: a float64 kd-tree and a blocked float32 brute
//! force on a candle device with an exact float64 re-check.

use super::types::{Element, Metric, DEFAULT_BLOCK_ROWS};
use crate::error::Result;
use candle_core::{Device, Tensor};
use kdtree::KdTree;
use rayon::prelude::*;
use std::collections::HashMap;

/// Validated input shared by both back ends.
pub(super) struct Data<'a, T> {
    pub x: &'a [T],
    pub n: usize,
    pub dim: usize,
    pub labels: &'a [u32],
    /// Row norms (cosine only; empty otherwise), as [`row_norms`].
    pub norms: &'a [f64],
    pub metric: Metric,
}

impl<T: Element> Data<'_, T> {
    fn row(&self, i: usize) -> &[T] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }
    /// The float64 distance between samples `i` and `j`, bit for bit as
    /// scipy's `cdist` computes it.
    pub(super) fn exact(&self, i: usize, j: usize) -> f64 {
        let (ni, nj) = match self.metric {
            Metric::Cosine => (self.norms[i], self.norms[j]),
            _ => (0.0, 0.0),
        };
        pair(self.metric, self.row(i), self.row(j), ni, nj)
    }
    /// Number of samples of each label.
    pub(super) fn class_sizes(&self) -> HashMap<u32, u32> {
        let mut m = HashMap::new();
        for &y in self.labels {
            *m.entry(y).or_insert(0u32) += 1;
        }
        m
    }
}

/// Row norms `sqrt(sum_k x_k^2)` summed left to right (scipy's `_row_norms`).
pub(super) fn row_norms<T: Element>(x: &[T], dim: usize) -> Vec<f64> {
    x.chunks_exact(dim)
        .map(|r| {
            let mut s = 0.0f64;
            for v in r {
                let v = v.to_f64();
                s += v * v;
            }
            s.sqrt()
        })
        .collect()
}

/// Float64 distance with scipy's per-pair formulas and summation order
/// (`na`, `nb`: row norms, cosine only).
#[inline]
fn pair<A: Element, B: Element>(metric: Metric, a: &[A], b: &[B], na: f64, nb: f64) -> f64 {
    match metric {
        Metric::Euclidean => {
            let mut s = 0.0f64;
            for (x, y) in a.iter().zip(b) {
                let d = (x.to_f64() - y.to_f64()).abs();
                s += d * d;
            }
            s.sqrt()
        }
        Metric::Cityblock => {
            let mut s = 0.0f64;
            for (x, y) in a.iter().zip(b) {
                s += (x.to_f64() - y.to_f64()).abs();
            }
            s
        }
        Metric::Chebyshev => {
            let mut s = 0.0f64;
            for (x, y) in a.iter().zip(b) {
                let d = (x.to_f64() - y.to_f64()).abs();
                if d > s {
                    s = d;
                }
            }
            s
        }
        Metric::Cosine => {
            let mut w = 0.0f64;
            for (x, y) in a.iter().zip(b) {
                w += x.to_f64() * y.to_f64();
            }
            let mut c = w / (na * nb);
            if c.abs() > 1.0 {
                c = c.signum();
            }
            1.0 - c
        }
    }
}

/// k* with a float64 kd-tree (euclidean, cityblock, chebyshev). Neighbours
/// come out in non-decreasing order of exactly the distances [`pair`]
/// computes (the box bound of the tree uses the same function on clamped
/// coordinates, which rounding keeps monotone), so walking them until the
/// first other-class sample is exact.
pub(super) fn kdtree<T: Element>(d: &Data<T>) -> Vec<u32> {
    debug_assert!(d.metric != Metric::Cosine);
    let dim = d.dim;
    let pts: Vec<f64> = d.x.iter().map(|v| v.to_f64()).collect();
    let mut tree: KdTree<f64, usize, &[f64]> = KdTree::with_capacity(dim, 16);
    for (i, p) in pts.chunks_exact(dim).enumerate() {
        // Points are finite and of the right dimension (validated).
        let _ = tree.add(p, i);
    }
    let metric = d.metric;
    let dist = move |a: &[f64], b: &[f64]| pair(metric, a, b, 0.0, 0.0);
    let sizes = d.class_sizes();
    let labels = d.labels;
    (0..d.n)
        .into_par_iter()
        .map(|i| {
            let yi = labels[i];
            let p = &pts[i * dim..(i + 1) * dim];
            // Same-class neighbours seen, and how many of them share the
            // largest distance seen so far (`last`).
            let (mut seen, mut at_last, mut last) = (0u32, 0u32, f64::NEG_INFINITY);
            let Ok(iter) = tree.iter_nearest(p, &dist) else {
                return sizes[&yi];
            };
            for (dj, &j) in iter {
                if j == i {
                    continue;
                }
                if labels[j] != yi {
                    // Same-class samples at exactly this distance are not
                    // counted (ties go to the other class).
                    let tied = if last == dj { at_last } else { 0 };
                    return 1 + seen - tied;
                }
                if dj > last {
                    last = dj;
                    at_last = 0;
                }
                at_last += 1;
                seen += 1;
            }
            sizes[&yi]
        })
        .collect()
}

const U32: f64 = 1.0 / 16_777_216.0; // 2^-24, float32 unit roundoff
const U64: f64 = 1.0 / 9_007_199_254_740_992.0; // 2^-53
/// Relative slack between the float64 threshold and the float32 space.
const SLACK: f64 = 1e-12;
/// Values per block: 2^22 f32 = 16 MiB, small enough for the allocator to
/// reuse (no fresh pages per block) and to bound memory.
const BLOCK_ELEMS: usize = 1 << 22;
/// Elements of the `rows x cols x dim` difference tile (cityblock, chebyshev).
const TILE_ELEMS: usize = 1 << 22;

/// The float32 copy of the features the device works on, and the per-row
/// size that scales the error bound.
pub(super) struct Prepared {
    pub xs: Vec<f32>,
    /// Euclidean: squared norm; cityblock: L1 norm; chebyshev: L-inf norm
    /// (all of the centred, scaled float32 rows, in float64); cosine: 1.
    pub size: Vec<f64>,
    /// Factor from original to approximate units (a power of two).
    pub scale: f64,
}

/// Centres the columns (euclidean, cityblock, chebyshev: translation does
/// not change distances but shrinks the float32 error of the norm
/// expansion) and scales by a power of two so that the largest coordinate is
/// in [0.5, 1) (exact; no float32 overflow or underflow); cosine: unit rows.
pub(super) fn prepare<T: Element>(d: &Data<T>) -> Prepared {
    let (n, dim) = (d.n, d.dim);
    if d.metric == Metric::Cosine {
        let mut xs = Vec::with_capacity(n * dim);
        for i in 0..n {
            let nr = d.norms[i];
            xs.extend(d.row(i).iter().map(|v| (v.to_f64() / nr) as f32));
        }
        return Prepared {
            xs,
            size: vec![1.0; n],
            scale: 1.0,
        };
    }
    let mu = column_means(d);
    let big =
        d.x.par_chunks(dim)
            .map(|r| {
                r.iter()
                    .zip(&mu)
                    .fold(0.0f64, |a, (v, m)| a.max((v.to_f64() - m).abs()))
            })
            .reduce(|| 0.0, f64::max);
    let scale = if big > 0.0 {
        2f64.powi((-(big.log2().floor() as i32) - 1).clamp(-1000, 1000))
    } else {
        1.0
    };
    let mut xs = vec![0f32; n * dim];
    let size = xs
        .par_chunks_mut(dim)
        .zip(d.x.par_chunks(dim))
        .map(|(o, r)| {
            for ((o, v), m) in o.iter_mut().zip(r).zip(&mu) {
                *o = ((v.to_f64() - m) * scale) as f32;
            }
            let it = o.iter().map(|&v| v as f64);
            match d.metric {
                Metric::Euclidean => it.map(|v| v * v).sum(),
                Metric::Cityblock => it.map(f64::abs).sum(),
                _ => it.fold(0.0f64, |a, v| a.max(v.abs())),
            }
        })
        .collect();
    Prepared { xs, size, scale }
}

/// Column means in float64 (summed per chunk of rows in parallel).
pub(super) fn column_means<T: Element>(d: &Data<T>) -> Vec<f64> {
    let dim = d.dim;
    let rows_per = (1 << 16) / dim.max(1) + 1;
    let mut mu =
        d.x.par_chunks(rows_per * dim)
            .map(|c| {
                let mut m = vec![0.0f64; dim];
                for r in c.chunks_exact(dim) {
                    for (m, v) in m.iter_mut().zip(r) {
                        *m += v.to_f64();
                    }
                }
                m
            })
            .reduce(
                || vec![0.0f64; dim],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
    for m in mu.iter_mut() {
        *m /= d.n as f64;
    }
    mu
}

/// Bound on |float32 approximation - float64 scipy distance| (approximate
/// units) for a pair of rows: `coef * (size_i + size_j) + floor`. A rigorous
/// first-order bound, doubled.
pub(super) fn bound_coefficients(metric: Metric, dim: usize, device: &Device) -> (f64, f64) {
    let d = dim as f64;
    // Unit roundoff of the float32 matmul (TF32 when CUDA allows it; the
    // flag is only meaningful on a CUDA device).
    let um = if device.is_cuda() && candle_core::cuda::gemm_reduced_precision_f32() {
        1.0 / 2048.0
    } else {
        U32
    };
    let coef = match metric {
        // |x|^2 + |y|^2 - 2 x.y: matmul d*um*(|x|^2+|y|^2)/2 twice, rounding
        // of data, norms and sums ~11 u32, float64 side 2(d+2) u64.
        Metric::Euclidean => 2.0 * (d * um + 16.0 * U32 + 4.0 * (d + 2.0) * U64),
        Metric::Cityblock => 2.0 * ((d + 4.0) * U32 + (d + 2.0) * U64),
        Metric::Chebyshev => 2.0 * (3.0 * U32 + 2.0 * U64),
        // size is 1 for both rows, so the bound is 2 * coef.
        Metric::Cosine => d * um + 6.0 * U32 + 2.0 * (d + 6.0) * U64,
    };
    // float32 subnormals (absolute error 2^-149 per operation).
    let floor = (d + 8.0) * 1e-36;
    (coef, floor)
}

/// What the device computes for rows `s..s+b` against all rows (row-major
/// `b x n`): euclidean and cosine the Gram block `x_i . x_j` (the CPU
/// finishes `|x_i|^2 + |x_j|^2 - 2 g` or `1 - g` in float32 while scanning,
/// which saves three `b x n` temporaries), cityblock and chebyshev the
/// distances themselves.
pub(super) fn block_values(metric: Metric, xt: &Tensor, s: usize, b: usize) -> Result<Tensor> {
    let (n, dim) = xt.dims2()?;
    let xb = xt.narrow(0, s, b)?;
    let m = match metric {
        Metric::Euclidean | Metric::Cosine => xb.matmul(&xt.t()?)?,
        Metric::Cityblock | Metric::Chebyshev => {
            let cols = (TILE_ELEMS / (b * dim)).max(1);
            let xb3 = xb.unsqueeze(1)?;
            let mut parts = Vec::with_capacity(n.div_ceil(cols));
            let mut c0 = 0;
            while c0 < n {
                let w = cols.min(n - c0);
                let diff = xb3
                    .broadcast_sub(&xt.narrow(0, c0, w)?.unsqueeze(0)?)?
                    .abs()?;
                parts.push(match metric {
                    Metric::Cityblock => diff.sum(2)?,
                    _ => diff.max(2)?,
                });
                c0 += w;
            }
            Tensor::cat(&parts, 1)?
        }
    };
    Ok(m.contiguous()?)
}

/// Runs `f` on the values of a contiguous float32 tensor: borrowed in place
/// on the CPU, copied to the host otherwise.
fn with_host_values<R>(m: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if m.device().is_cpu() {
        let (storage, layout) = m.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&cpu.as_slice::<f32>()?[a..b]));
        }
    }
    let host = m.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&host))
}

/// Per-run constants of the row scan.
struct Scan<'a> {
    /// Per-row part of the error bound (pair bound = e[i] + e[j]).
    e: Vec<f64>,
    /// max(e).
    emax: f64,
    /// float32 squared norms (euclidean).
    sq: Vec<f32>,
    scale: f64,
    /// Sample indices of each class.
    members: HashMap<u32, Vec<usize>>,
    labels: &'a [u32],
}

/// k* by blocks of rows on `device`, exact through a float64 re-check.
pub(super) fn blocked<T: Element>(
    d: &Data<T>,
    block_rows: usize,
    device: &Device,
) -> Result<Vec<u32>> {
    let block_rows = if block_rows == 0 {
        DEFAULT_BLOCK_ROWS
    } else {
        block_rows
    };
    let (n, dim, metric) = (d.n, d.dim, d.metric);
    let Prepared { xs, size, scale } = prepare(d);
    let (coef, floor) = bound_coefficients(metric, dim, device);
    let mut members: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &y) in d.labels.iter().enumerate() {
        members.entry(y).or_default().push(i);
    }
    let e: Vec<f64> = size.iter().map(|&s| coef * s + floor / 2.0).collect();
    let scan = Scan {
        emax: e.iter().fold(0.0f64, |a, &b| a.max(b)),
        e,
        sq: match metric {
            Metric::Euclidean => size.iter().map(|&v| v as f32).collect(),
            _ => Vec::new(),
        },
        scale,
        members,
        labels: d.labels,
    };
    let xt = Tensor::from_vec(xs, (n, dim), device)?;
    let mut out = vec![0u32; n];
    let mut rows = block_rows.clamp(1, (BLOCK_ELEMS / n).max(1));
    if matches!(metric, Metric::Cityblock | Metric::Chebyshev) {
        rows = rows.min(256);
    }
    let mut s = 0;
    while s < n {
        let b = rows.min(n - s);
        let values = block_values(metric, &xt, s, b)?;
        with_host_values(&values, |values| {
            out[s..s + b]
                .par_iter_mut()
                .zip(values.par_chunks_exact(n))
                .enumerate()
                .for_each(|(r, (k, v))| *k = row_kstar(d, &scan, s + r, v))
        })?;
        s += b;
    }
    Ok(out)
}

/// The exact k* of row `i` from its block values `v` (length n).
fn row_kstar<T: Element>(d: &Data<T>, scan: &Scan, i: usize, v: &[f32]) -> u32 {
    let labels = scan.labels;
    let yi = labels[i];
    let e = &scan.e;
    let ei = e[i];
    // The float32 approximation, with the same float32 operations the
    // error bound assumes.
    let approx = |j: usize| -> f32 {
        match d.metric {
            Metric::Euclidean => (scan.sq[i] + scan.sq[j]) - 2.0 * v[j],
            Metric::Cosine => 1.0 - v[j],
            _ => v[j],
        }
    };
    // Interval certain to hold the float64 distance, in approximate units.
    let interval = |j: usize| -> (f64, f64) {
        let a = approx(j) as f64;
        if !a.is_finite() {
            return (f64::NEG_INFINITY, f64::INFINITY);
        }
        let r = ei + e[j];
        (a - r, a + r)
    };
    // 1. Scan the other classes for the smallest approximation `amin`,
    //    keeping every sample whose approximation is within 2 * slack of
    //    it (slack >= e[i] + e[j] for every j). The nearest other-class
    //    sample is certainly among them: its float64 distance is at most
    //    `upper = amin + slack`, and any sample whose interval starts above
    //    `upper` is farther.
    let slack = ei + scan.emax;
    let mut amin = f32::INFINITY;
    let mut keep = f64::INFINITY;
    let mut others = false;
    let mut cands: Vec<usize> = Vec::new();
    for (j, &yj) in labels.iter().enumerate() {
        if yj == yi {
            continue;
        }
        others = true;
        let a = approx(j);
        // NaN (never expected after scaling) is kept: its interval is
        // unbounded.
        if a as f64 <= keep || a.is_nan() {
            cands.push(j);
            if a < amin {
                amin = a;
                keep = amin as f64 + 2.0 * slack;
                if cands.len() >= 64 {
                    cands.retain(|&j| approx(j) as f64 <= keep || approx(j).is_nan());
                }
            }
        }
    }
    let class = &scan.members[&yi];
    if !others {
        // No other class at all.
        return class.len() as u32;
    }
    let upper = amin as f64 + slack;
    // 2. The exact threshold: the minimum over the candidates whose
    //    interval reaches below `upper`.
    let mut t = f64::INFINITY;
    for &j in &cands {
        if interval(j).0 <= upper {
            let x = d.exact(i, j);
            if x < t {
                t = x;
            }
        }
    }
    // The threshold in approximate units, widened by a relative slack that
    // covers the final rounding (sqrt, squaring).
    let ta = match d.metric {
        Metric::Euclidean => (t * scan.scale) * (t * scan.scale),
        Metric::Cosine => t,
        _ => t * scan.scale,
    };
    let (t_lo, t_hi) = (ta - ta * SLACK, ta + ta * SLACK);
    // 3. Same-class samples strictly closer than the threshold.
    let mut count = 0u32;
    for &j in class {
        if j == i {
            continue;
        }
        let (lo, hi) = interval(j);
        if hi < t_lo || (lo <= t_hi && d.exact(i, j) < t) {
            count += 1;
        }
    }
    1 + count
}
