//! Distance score (DS) and continuity rank (SPEC.md, "Distance score").
//! DS(x, x') = ||F(x) - F(x')||_2^2, summed over classes.

use super::{Histogram, LogHistogram};

/// Per-sample DS between two row-major `[n, k]` logit arrays (the first
/// `min(clean, perturbed) / k` rows: a streaming job passes a prefix).
pub fn ds_per_sample(clean: &[f32], perturbed: &[f32], k: usize) -> Vec<f32> {
    clean
        .chunks_exact(k)
        .zip(perturbed.chunks_exact(k))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum())
        .collect()
}

/// Mean, median and histogram of DS values.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DsSummary {
    pub mean: f64,
    pub median: f64,
    pub histogram: Histogram,
    /// The same values over log-spaced bins.
    pub histogram_log: LogHistogram,
}

pub fn summarize(ds: &[f32], bins: usize) -> DsSummary {
    let v: Vec<f64> = ds.iter().map(|&d| d as f64).collect();
    DsSummary {
        mean: super::mean(&v),
        median: super::median(&v),
        histogram: Histogram::auto(&v, bins),
        histogram_log: LogHistogram::auto(&v, bins),
    }
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((*x - *y) as f64).powi(2))
        .sum()
}

/// Continuity rank of every sample: 1 + the number of other same-class
/// samples x_B whose clean logits are strictly closer to F(x_A) than F(x_A')
/// is. Rank 1 = the perturbed copy is x_A's nearest same-class neighbour.
/// `clean` and `perturbed` are row-major `[n, k]`.
pub fn continuity_ranks(clean: &[f32], perturbed: &[f32], labels: &[u32], k: usize) -> Vec<u32> {
    use rayon::prelude::*;
    let n = labels.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let a = &clean[i * k..(i + 1) * k];
            let dp = dist2(a, &perturbed[i * k..(i + 1) * k]);
            let closer = (0..n)
                .filter(|&j| j != i && labels[j] == labels[i])
                .filter(|&j| dist2(a, &clean[j * k..(j + 1) * k]) < dp)
                .count();
            1 + closer as u32
        })
        .collect()
}

/// Fraction of samples whose continuity rank is above 1.
pub fn discontinuity_rate(ranks: &[u32]) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().filter(|&&r| r > 1).count() as f64 / ranks.len() as f64
}
