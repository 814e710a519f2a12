//! Metrics of SPEC.md: accuracy, DS and continuity rank, PGD adversarial
//! accuracy, and the k* distribution; beside k*, the 2-D PCA / t-SNE view
//! of a layer it is contrasted with (`embed`). Each is a plain function over
//! tensors or slices; the engine and the CLI only call them.

pub mod accuracy;
pub mod ds;
pub mod embed;
pub mod kstar;
pub mod pgd;

/// A histogram with `counts.len()` equal-width bins over `[lo, hi]`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    /// numpy.histogram semantics: bins closed on the left, the last bin also on
    /// the right; values outside `[lo, hi]` are not counted.
    pub fn new(values: impl IntoIterator<Item = f64>, bins: usize, lo: f64, hi: f64) -> Self {
        let mut counts = vec![0u64; bins.max(1)];
        let width = (hi - lo) / counts.len() as f64;
        for v in values {
            if !(v >= lo && v <= hi) {
                continue;
            }
            let mut b = if width > 0.0 {
                ((v - lo) / width) as usize
            } else {
                0
            };
            if b >= counts.len() {
                b = counts.len() - 1;
            }
            counts[b] += 1;
        }
        Histogram { lo, hi, counts }
    }
    /// Over the range of the values themselves.
    pub fn auto(values: &[f64], bins: usize) -> Self {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return Histogram::new([], bins, 0.0, 1.0);
        }
        let hi = if hi > lo { hi } else { lo + 1.0 };
        Histogram::new(values.iter().copied(), bins, lo, hi)
    }
}

/// A histogram over `counts.len()` log-spaced bins: `edges` run
/// geometrically from the smallest positive value to the largest (as
/// `np.geomspace`), counts as `np.histogram` over those edges; values <= 0
/// have no place on a log axis and are counted in `nonpositive`. For
/// heavy-tailed DS, where equal-width bins put nearly everything in the first.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LogHistogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub nonpositive: u64,
}

impl LogHistogram {
    pub fn auto(values: &[f64], bins: usize) -> Self {
        let bins = bins.max(1);
        let nonpositive = values.iter().filter(|v| **v <= 0.0).count() as u64;
        let pos = || values.iter().copied().filter(|v| *v > 0.0 && v.is_finite());
        let lo = pos().fold(f64::INFINITY, f64::min);
        let hi = pos().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return LogHistogram {
                edges: Vec::new(),
                counts: Vec::new(),
                nonpositive,
            };
        }
        let hi = if hi > lo { hi } else { lo * 2.0 };
        let (a, b) = (lo.ln(), hi.ln());
        let mut edges: Vec<f64> = (0..=bins)
            .map(|i| (a + (b - a) * i as f64 / bins as f64).exp())
            .collect();
        // np.geomspace puts the end points exactly.
        edges[0] = lo;
        edges[bins] = hi;
        let mut counts = vec![0u64; bins];
        for v in pos() {
            if v < lo || v > hi {
                continue;
            }
            let i = edges.partition_point(|e| *e <= v).saturating_sub(1);
            counts[i.min(bins - 1)] += 1;
        }
        LogHistogram {
            edges,
            counts,
            nonpositive,
        }
    }
}

/// Median as numpy computes it (mean of the two middle values for even n).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}
