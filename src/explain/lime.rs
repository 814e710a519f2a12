//! LIME for images as the `lime` package computes it
//! (`LimeImageExplainer.explain_instance` with its defaults): superpixels
//! (a square grid of 4 px cells up to 64 px, SLIC as scikit-image computes
//! it for larger images: [`super::slic`]), random on/off masks over them (the first all on), a
//! superpixel switched off takes its mean colour, the model's softmax
//! probability of the explained class per masked image, cosine distance of
//! each mask to the all-on one, kernel sqrt(exp(-d^2 / 0.25^2)), and a ridge
//! regression (alpha 1, intercept) weighted by the kernel: its coefficient
//! per superpixel is the attribution of that superpixel's pixels.

use crate::model::Model;
use crate::Result;
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};

/// LIME's settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LimeConfig {
    /// Masked images per explanation (lime's `num_samples`, 1000).
    pub samples: usize,
    /// lime's `kernel_width` (0.25).
    pub kernel_width: f64,
    /// Seed of the masks (sample `i` of a batch uses `seed + i`).
    pub seed: u64,
}

impl Default for LimeConfig {
    fn default() -> Self {
        LimeConfig {
            samples: 1000,
            kernel_width: 0.25,
            seed: 0,
        }
    }
}

/// Square superpixels of `cell` x `cell` pixels (the last row and column
/// of cells may be smaller), numbered row by row; returns the segment of
/// each pixel and the number of segments.
pub fn grid_segments(h: usize, w: usize, cell: usize) -> (Vec<u32>, usize) {
    let cell = cell.max(1);
    let (gh, gw) = (h.div_ceil(cell), w.div_ceil(cell));
    let seg = (0..h * w)
        .map(|p| ((p / w / cell) * gw + (p % w) / cell) as u32)
        .collect();
    (seg, gh * gw)
}

/// Images up to this side get grid superpixels, larger ones SLIC.
pub const GRID_UP_TO: usize = 64;

/// The superpixels of one image (CHW in [0,1]): up to [`GRID_UP_TO`] px a
/// grid of 4 px cells (49 superpixels at 28 px, where SLIC's ~100 segments
/// would be a few pixels each); larger images SLIC with scikit-image's
/// defaults (about 100 segments, compactness 10; deterministic, so nothing
/// to seed).
pub fn segments(pixels: &[f32], channels: usize, h: usize, w: usize) -> (Vec<u32>, usize) {
    if h.max(w) <= GRID_UP_TO {
        grid_segments(h, w, 4)
    } else {
        super::slic::slic(pixels, channels, h, w, &super::slic::SlicConfig::default())
    }
}

/// LIME's masks: `samples` rows of `n` on/off values, uniform, the first row
/// all on.
pub fn masks(samples: usize, n: usize, seed: u64) -> Vec<Vec<bool>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..samples)
        .map(|i| (0..n).map(|_| i == 0 || rng.gen_bool(0.5)).collect())
        .collect()
}

/// LIME's explanation of one image `x` (`[1, C, H, W]` in [0,1]) for class
/// `target` given its superpixels and masks: (coefficient per superpixel,
/// intercept).
pub fn explain_with(
    m: &Model,
    x: &Tensor,
    target: u32,
    segments: &[u32],
    n_seg: usize,
    masks: &[Vec<bool>],
    kernel_width: f64,
) -> Result<(Vec<f64>, f64)> {
    let (_, c, h, w) = x.dims4()?;
    let hw = h * w;
    let img = x
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    // a switched-off superpixel takes its mean colour (lime's hide_color=None)
    let mut sums = vec![0f64; n_seg * c];
    let mut counts = vec![0usize; n_seg];
    for p in 0..hw {
        let s = segments[p] as usize;
        counts[s] += 1;
        for ch in 0..c {
            sums[s * c + ch] += img[ch * hw + p] as f64;
        }
    }
    let mean: Vec<f32> = (0..n_seg * c)
        .map(|i| (sums[i] / counts[i / c].max(1) as f64) as f32)
        .collect();
    let mut probs = Vec::with_capacity(masks.len());
    for chunk in masks.chunks(250) {
        let mut batch = Vec::with_capacity(chunk.len() * c * hw);
        for row in chunk {
            for ch in 0..c {
                for p in 0..hw {
                    let s = segments[p] as usize;
                    batch.push(if row[s] {
                        img[ch * hw + p]
                    } else {
                        mean[s * c + ch]
                    });
                }
            }
        }
        let t = Tensor::from_vec(batch, (chunk.len(), c, h, w), &m.device)?;
        let p = candle_nn::ops::softmax_last_dim(&m.logits(&t)?.to_dtype(DType::F32)?)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        probs.extend(p.iter().map(|r| r[target as usize] as f64));
    }
    // cosine distance to the all-on mask, lime's kernel
    let weights: Vec<f64> = masks
        .iter()
        .map(|row| {
            let on = row.iter().filter(|&&b| b).count() as f64;
            let d = if on == 0.0 {
                1.0
            } else {
                1.0 - on / (on.sqrt() * (n_seg as f64).sqrt())
            };
            let d = d.clamp(0.0, 2.0);
            (-(d * d) / (kernel_width * kernel_width)).exp().sqrt()
        })
        .collect();
    Ok(weighted_ridge(masks, &probs, &weights, 1.0))
}

/// scikit-learn's `Ridge(alpha, fit_intercept=True).fit(X, y,
/// sample_weight)`: X and y centred by their weighted means, then
/// (Xc' W Xc + alpha I) b = Xc' W yc; intercept = y_mean - x_mean . b.
fn weighted_ridge(x: &[Vec<bool>], y: &[f64], w: &[f64], alpha: f64) -> (Vec<f64>, f64) {
    let n = x.len();
    let d = x.first().map_or(0, |r| r.len());
    let sw: f64 = w.iter().sum();
    let xv = |i: usize, j: usize| if x[i][j] { 1.0 } else { 0.0 };
    let xm: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| w[i] * xv(i, j)).sum::<f64>() / sw)
        .collect();
    let ym = (0..n).map(|i| w[i] * y[i]).sum::<f64>() / sw;
    let mut a = DMatrix::<f64>::zeros(d, d);
    let mut b = DVector::<f64>::zeros(d);
    for i in 0..n {
        let row: Vec<f64> = (0..d).map(|j| xv(i, j) - xm[j]).collect();
        let yc = y[i] - ym;
        for j in 0..d {
            b[j] += w[i] * row[j] * yc;
            for k in 0..d {
                a[(j, k)] += w[i] * row[j] * row[k];
            }
        }
    }
    for j in 0..d {
        a[(j, j)] += alpha;
    }
    let coef = a
        .cholesky()
        .map(|ch| ch.solve(&b))
        .unwrap_or_else(|| DVector::zeros(d));
    let intercept = ym - (0..d).map(|j| xm[j] * coef[j]).sum::<f64>();
    (coef.iter().copied().collect(), intercept)
}

/// LIME of each image of `x` (`[N, C, H, W]`, in [0,1]) for `targets`,
/// over its [`segments`]: `[N, 1, H, W]`, each pixel its superpixel's
/// coefficient.
pub fn lime(m: &Model, x: &Tensor, targets: &[u32], cfg: &LimeConfig) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let mut out = Vec::with_capacity(n * h * w);
    for (i, &target) in targets.iter().enumerate().take(n) {
        let xi = x.narrow(0, i, 1)?;
        let pixels: Vec<f32> = xi.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let (segments, n_seg) = segments(&pixels, c, h, w);
        let rows = masks(cfg.samples.max(1), n_seg, cfg.seed.wrapping_add(i as u64));
        let (coef, _) = explain_with(m, &xi, target, &segments, n_seg, &rows, cfg.kernel_width)?;
        out.extend(segments.iter().map(|&s| coef[s as usize] as f32));
    }
    Ok(Tensor::from_vec(out, (n, 1, h, w), &Device::Cpu)?)
}
