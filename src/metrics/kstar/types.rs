//! The vocabulary of k*: the distances ([`Metric`]), the exact back ends
//! ([`Method`]) and their options, and the feature element types.

use crate::error::Result;
use candle_core::{Device, Tensor};
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
