//! Exact k* of every sample: validates the features, picks the back end
//! (kd-tree, blocked search on the CPU, or on a CUDA GPU) and, in
//! [`analyze`], summarises per class.

#[cfg(feature = "cuda")]
use super::gpu;
use super::report::{summarize_with, KstarReport, Thresholds};
use super::search;
use super::types::{Element, KstarOptions, Method, Metric, KDTREE_MAX_DIM};
use crate::error::Result;
use candle_core::Device;
use rayon::prelude::*;

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
        #[cfg(feature = "cuda")]
        if gpu::applies(x.metric, device) {
            // The blocks stay on the GPU; only near ties come back to the CPU.
            return gpu::blocked(&x, opts.block_rows, device);
        }
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
    analyze_with(
        features,
        dim,
        labels,
        None,
        class_names,
        metric,
        thresholds,
        device,
    )
}

/// [`analyze`], with each sample's correctness for the accuracies
/// ([`super::report::summarize_with`]).
#[allow(clippy::too_many_arguments)]
pub fn analyze_with<T: Element>(
    features: &[T],
    dim: usize,
    labels: &[u32],
    correct: Option<&[bool]>,
    class_names: &[String],
    metric: Metric,
    thresholds: Thresholds,
    device: &Device,
) -> Result<KstarReport> {
    let k = kstar(features, dim, labels, metric, device)?;
    summarize_with(&k, labels, correct, class_names, metric, thresholds)
}
