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
//!
//! Files: [`types`] (metrics, back ends, element types), [`compute`] (the
//! entry points), `search` (the CPU back ends), `gpu` (the CUDA back end),
//! [`report`] (statistics and patterns), [`features`] (reading feature files).

mod compute;
mod features;
#[cfg(feature = "cuda")]
mod gpu;
mod report;
mod search;
mod types;

pub use compute::{analyze, analyze_with, kstar, kstar_with};
pub use features::{layers_in, read_features, read_features_at, FeatureFile, FeatureValues};
pub use report::{
    class_moments, normalized, summarize, summarize_with, ClassStats, GroupStats, KstarReport,
    Moments, Pattern, Summary, Thresholds, HISTOGRAM_BINS,
};
pub use types::{Element, KstarOptions, Method, Metric, DEFAULT_BLOCK_ROWS, KDTREE_MAX_DIM};
