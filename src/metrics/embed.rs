//! 2-D embeddings of a layer's latents, for the picture the k* paper
//! contrasts k* with (its Figure 4, right): PCA (scikit-learn's: centred,
//! the two leading principal axes, each signed so that its largest
//! component is positive) through nalgebra's symmetric eigensolver, and
//! t-SNE (Barnes-Hut, the `bhtsne` crate, started from a seeded Gaussian as
//! scikit-learn's `init="random"`). PCA is a number checked against
//! scikit-learn; t-SNE is a picture.

use crate::error::Result;
use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

/// How a layer is drawn in two dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Pca,
    Tsne,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Pca => "PCA",
            Method::Tsne => "t-SNE",
        }
    }
}

/// One 2-D point per row of `x` (`n` rows of `d` values).
pub fn embed(method: Method, x: &[f32], d: usize, seed: u64) -> Result<Vec<[f64; 2]>> {
    match method {
        Method::Pca => pca(x, d),
        Method::Tsne => tsne(x, d, seed),
    }
}

fn check(x: &[f32], d: usize) -> Result<usize> {
    if d == 0 || x.is_empty() || !x.len().is_multiple_of(d) {
        return Err(crate::invalid!(
            "a 2-D view needs n x d features with d >= 1 (got {} values, d = {d})",
            x.len()
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(crate::invalid!(
            "feature value at row {}, column {} is not finite",
            i / d,
            i % d
        ));
    }
    Ok(x.len() / d)
}

/// Scores on the two leading principal axes, as
/// `sklearn.decomposition.PCA(2).fit_transform(x)` (float64 arithmetic).
pub fn pca(x: &[f32], d: usize) -> Result<Vec<[f64; 2]>> {
    let n = check(x, d)?;
    let mut xc = DMatrix::<f64>::from_fn(n, d, |i, j| x[i * d + j] as f64);
    for j in 0..d {
        let mean = xc.column(j).mean();
        xc.column_mut(j).add_scalar_mut(-mean);
    }
    // The axes: eigenvectors of the d x d scatter matrix, or, with fewer
    // rows than columns, from the n x n Gram matrix (v = Xc' u / |Xc' u|).
    let axes: Vec<nalgebra::DVector<f64>> = if d <= n {
        let eig = SymmetricEigen::new(xc.transpose() * &xc);
        leading(&eig, 2)
            .into_iter()
            .map(|k| eig.eigenvectors.column(k).into_owned())
            .collect()
    } else {
        let eig = SymmetricEigen::new(&xc * xc.transpose());
        leading(&eig, 2)
            .into_iter()
            .map(|k| {
                let v = xc.transpose() * eig.eigenvectors.column(k);
                let norm = v.norm();
                if norm > 0.0 {
                    v / norm
                } else {
                    v
                }
            })
            .collect()
    };
    let mut out = vec![[0.0; 2]; n];
    for (a, v) in axes.iter().enumerate() {
        // scikit-learn's svd_flip (u_based_decision=False): the component's
        // largest absolute entry is positive.
        let big = v
            .iter()
            .fold(0.0f64, |m, &c| if c.abs() > m.abs() { c } else { m });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        let scores = &xc * v;
        for (o, s) in out.iter_mut().zip(scores.iter()) {
            o[a] = sign * s;
        }
    }
    Ok(out)
}

/// Indices of the `k` largest eigenvalues (at most as many as there are).
fn leading(eig: &SymmetricEigen<f64, nalgebra::Dyn>, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..eig.eigenvalues.len()).collect();
    idx.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    idx.truncate(k);
    idx
}

/// Barnes-Hut t-SNE (theta 0.5, perplexity 30 or less for small sets, 1000
/// epochs, euclidean), started from a Gaussian of standard deviation 1e-4
/// drawn from `seed`, on one thread (so that one seed gives one picture).
pub fn tsne(x: &[f32], d: usize, seed: u64) -> Result<Vec<[f64; 2]>> {
    let n = check(x, d)?;
    if n < 4 {
        return Err(crate::invalid!("t-SNE needs at least 4 samples (got {n})"));
    }
    let rows: Vec<Vec<f32>> = x.chunks_exact(d).map(<[f32]>::to_vec).collect();
    // bhtsne needs 3 * perplexity < n.
    let perplexity = 30f32.min((n as f32 - 1.0) / 3.0 - 0.01).max(1.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1e-4).expect("a valid standard deviation");
    let init: Vec<f32> = (0..2 * n).map(|_| normal.sample(&mut rng)).collect();
    // On one thread: bhtsne's parallel sums would otherwise add in a
    // different order each run, and t-SNE amplifies the difference; one seed
    // must give one picture.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| crate::invalid!("cannot start the t-SNE thread: {e}"))?;
    let y = pool.install(|| {
        bhtsne::tSNE::new(&rows)
            .embedding_dim(2)
            .perplexity(perplexity)
            .epochs(1000)
            .initial_embedding(init)
            .barnes_hut(0.5, |a: &Vec<f32>, b: &Vec<f32>| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum::<f32>()
                    .sqrt()
            })
            .embedding()
    });
    Ok(y.chunks_exact(2)
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect())
}
