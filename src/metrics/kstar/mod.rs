//! k* distribution (SPEC.md, Kotyan & Vargas).
//!
//! For sample `i` with label `y_i`, `k*_i = 1 + |{ j != i : y_j = y_i,
//! d(i, j) < D_i }|` where `D_i` is the distance from `i` to its nearest
//! sample of another class. This is the 1-based rank of the first
//! other-class neighbour when all neighbours are sorted by distance and
//! **ties are broken in favour of the other class**: a same-class sample at
//! exactly `D_i` is *not* counted. When no other class exists at all, `k*_i =
//! n_{y_i}` (every same-class sample precedes "the end").
//!
//! The integers are exact: they are identical to a float64 brute force over
//! `scipy.spatial.distance.cdist` (same per-pair formulas, same summation
//! order):
//!
//! * euclidean: `sqrt(sum_k (a_k - b_k)^2)`
//! * cityblock: `sum_k |a_k - b_k|`
//! * chebyshev: `max_k |a_k - b_k|`
//! * cosine: `1 - clip(a.b / (|a| |b|), -1, 1)`, norms `sqrt(sum_k a_k^2)`.
//!
//! Two exact back ends ([`Method`]):
//!
//! * a kd-tree (the `kdtree` crate) in float64, for euclidean, cityblock and
//!   chebyshev when the dimension is at most [`KDTREE_MAX_DIM`];
//! * a blocked brute force on a candle [`Device`] (CPU or CUDA): blocks of
//!   rows against all samples in float32 (euclidean and cosine through a
//!   matmul), then an exact float64 re-check on the CPU of every distance
//!   whose float32 value is within a rigorous error bound of the decision
//!   threshold. Memory stays bounded by the block size.
//!
//! Statistics (per class, over normalised `k*_i / n_{y_i}`) and the pattern
//! classification live in [`report`].

#[cfg(feature = "cuda")]
mod gpu;
mod report;
mod search;

pub use report::{
    class_moments, normalized, read_features, summarize, ClassStats, FeatureFile, FeatureValues,
    GroupStats, KstarReport, Moments, Pattern, Summary, Thresholds, HISTOGRAM_BINS,
};

use crate::error::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::fmt;
use std::str::FromStr;

/// Largest dimension for which [`Method::Auto`] uses the kd-tree.
pub const KDTREE_MAX_DIM: usize = 8;

/// Default number of rows per block of the brute force.
pub const DEFAULT_BLOCK_ROWS: usize = 1024;

/// Distance between two feature vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// L2.
    #[default]
    Euclidean,
    /// L1.
    Cityblock,
    /// L-infinity.
    Chebyshev,
    /// 1 - cosine similarity.
    Cosine,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::Euclidean,
        Metric::Cityblock,
        Metric::Chebyshev,
        Metric::Cosine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cityblock => "cityblock",
            Metric::Chebyshev => "chebyshev",
            Metric::Cosine => "cosine",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == t)
            .ok_or_else(|| {
                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                crate::invalid!(
                    "unknown metric '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Which exact algorithm computes k*.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// kd-tree for euclidean/cityblock/chebyshev up to [`KDTREE_MAX_DIM`]
    /// dimensions, the blocked brute force otherwise.
    #[default]
    Auto,
    /// Always the kd-tree (any dimension; not for cosine).
    KdTree,
    /// Always the blocked brute force on the device.
    Blocked,
}

/// Options of [`kstar_with`].
#[derive(Clone, Copy, Debug)]
pub struct KstarOptions {
    pub metric: Metric,
    pub method: Method,
    /// Rows per block of the brute force; 0 (the default): automatic
    /// ([`DEFAULT_BLOCK_ROWS`] on the CPU, further capped so that one block
    /// holds at most 2^22 distances; on a GPU whole rows while the Gram
    /// matrix fits 2^28 values, the symmetric two-pass search beyond).
    pub block_rows: usize,
}

impl Default for KstarOptions {
    fn default() -> Self {
        KstarOptions {
            metric: Metric::Euclidean,
            method: Method::Auto,
            block_rows: 0,
        }
    }
}

/// A feature element: `f32` or `f64`. Distances are always evaluated in
/// float64 on the values as given.
pub trait Element: Copy + Send + Sync + 'static + private::Sealed {
    fn to_f64(self) -> f64;
    /// `n x dim` values as a tensor of this type on `device`.
    fn upload(x: &[Self], n: usize, dim: usize, device: &Device) -> candle_core::Result<Tensor>;
}

impl Element for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn upload(x: &[Self], n: usize, dim: usize, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(x, (n, dim), device)
    }
}

impl Element for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    fn upload(x: &[Self], n: usize, dim: usize, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(x, (n, dim), device)
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Exact k* of every sample (row-major `n x dim` features, `n` labels) with
/// the default back end for `metric`.
pub fn kstar<T: Element>(
    features: &[T],
    dim: usize,
    labels: &[u32],
    metric: Metric,
    device: &Device,
) -> Result<Vec<u32>> {
    let opts = KstarOptions {
        metric,
        ..KstarOptions::default()
    };
    kstar_with(features, dim, labels, &opts, device)
}

/// [`kstar`] with an explicit back end and block size.
pub fn kstar_with<T: Element>(
    features: &[T],
    dim: usize,
    labels: &[u32],
    opts: &KstarOptions,
    device: &Device,
) -> Result<Vec<u32>> {
    let t0 = std::time::Instant::now();
    let n = validate(features, dim, labels)?;
    if std::env::var_os("SEMCON_KSTAR_TRACE").is_some() {
        eprintln!(
            "k* trace: validate: {:.2} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    let norms = if opts.metric == Metric::Cosine {
        let norms = search::row_norms(features, dim);
        if let Some(i) = norms.iter().position(|&v| v == 0.0) {
            return Err(crate::invalid!(
                "cosine distance is undefined for sample {i}: all its features are zero"
            ));
        }
        norms
    } else {
        Vec::new()
    };
    let use_tree = match opts.method {
        Method::Auto => dim <= KDTREE_MAX_DIM && opts.metric != Metric::Cosine,
        Method::KdTree => {
            if opts.metric == Metric::Cosine {
                return Err(crate::invalid!(
                    "the kd-tree back end supports euclidean, cityblock and chebyshev, not cosine"
                ));
            }
            true
        }
        Method::Blocked => false,
    };
    let x = search::Data {
        x: features,
        n,
        dim,
        labels,
        norms: &norms,
        metric: opts.metric,
    };
    if use_tree {
        Ok(search::kdtree(&x))
    } else {
        search::blocked(&x, opts.block_rows, device)
    }
}

/// Checks shapes and values; returns the number of samples.
fn validate<T: Element>(features: &[T], dim: usize, labels: &[u32]) -> Result<usize> {
    if dim == 0 {
        return Err(crate::invalid!("features must have at least one dimension"));
    }
    if !features.len().is_multiple_of(dim) {
        return Err(crate::invalid!(
            "{} feature values do not form rows of dimension {dim}",
            features.len()
        ));
    }
    let n = features.len() / dim;
    if n != labels.len() {
        return Err(crate::invalid!(
            "features have {n} rows but there are {} labels",
            labels.len()
        ));
    }
    if n == 0 {
        return Err(crate::invalid!(
            "no samples: k* needs at least one feature row"
        ));
    }
    // A vectorised parallel scan first; the position only when one is bad.
    let all_finite = features
        .par_chunks(1 << 16)
        .all(|c| c.iter().fold(true, |ok, v| ok & v.to_f64().is_finite()));
    if let Some(p) = (!all_finite)
        .then(|| features.iter().position(|v| !v.to_f64().is_finite()))
        .flatten()
    {
        let v = features[p].to_f64();
        let what = if v.is_nan() { "NaN" } else { "infinite" };
        return Err(crate::invalid!(
            "feature value at row {}, column {} is {what}; k* needs finite features",
            p / dim,
            p % dim
        ));
    }
    Ok(n)
}

/// Computes k* and its per-class statistics. `class_names[c]` names class
/// `c` (classes beyond the list are named by their number). The report's
/// `layer` is left empty for the caller to fill.
pub fn analyze<T: Element>(
    features: &[T],
    dim: usize,
    labels: &[u32],
    class_names: &[String],
    metric: Metric,
    thresholds: Thresholds,
    device: &Device,
) -> Result<KstarReport> {
    let k = kstar(features, dim, labels, metric, device)?;
    summarize(&k, labels, class_names, metric, thresholds)
}
