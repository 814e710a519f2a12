//! Numbers for explanations, which the semantic-continuity paper only shows
//! as pictures: how far an explanation moves when the image moves a little
//! (Captum's `sensitivity_max`) or changes only in colour (the same ratio
//! under one of the paper's perturbations), how much of it falls on a known
//! background (the colour-shift set), and how fast the explained class's
//! probability falls as the pixels it names are deleted (RISE's deletion
//! AUC).

use super::{explain, Method, Options};
use crate::data::{colour, ImageSet};
use crate::model::Model;
use crate::perturb::Kind;
use crate::Result;
use candle_core::{DType, Device, Tensor, D};
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Per sample, ||a_i - b_i|| / ||a_i|| (Frobenius norms; a zero ||a_i||
/// counts as 1, as Captum does).
pub fn relative_change(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
    let a = a.to_dtype(DType::F32)?.flatten_from(1)?;
    let b = b.to_dtype(DType::F32)?.flatten_from(1)?;
    let num = (&a - &b)?.sqr()?.sum(D::Minus1)?.sqrt()?.to_vec1::<f32>()?;
    let den = a.sqr()?.sum(D::Minus1)?.sqrt()?.to_vec1::<f32>()?;
    Ok(num
        .iter()
        .zip(&den)
        .map(|(n, d)| if *d == 0.0 { *n } else { n / d })
        .collect())
}

/// Captum's `sensitivity_max` given the perturbed copies of `x` (each
/// `[N, C, H, W]`, the explanations' targets unchanged): per sample, the
/// largest [`relative_change`] from the explanation of `x` to that of a copy.
pub fn sensitivity_max_with(
    m: &Model,
    x: &Tensor,
    targets: &[u32],
    method: Method,
    opts: &Options,
    copies: &[Tensor],
) -> Result<Vec<f32>> {
    let copies = copies.iter().cloned().map(Ok);
    let best = sensitivity_max_over(m, x, targets, method, opts, None, copies, &mut || true)?;
    Ok(best.unwrap_or_default())
}

/// [`sensitivity_max_with`] over copies made as they are taken, with the
/// explanation of `x` given (`base`) or computed, asking `wanted` before
/// each copy: `None` once it says stop (the explorer's job was superseded).
#[allow(clippy::too_many_arguments)]
pub fn sensitivity_max_over(
    m: &Model,
    x: &Tensor,
    targets: &[u32],
    method: Method,
    opts: &Options,
    base: Option<&Tensor>,
    copies: impl IntoIterator<Item = Result<Tensor>>,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<Option<Vec<f32>>> {
    let base = match base {
        Some(b) => b.clone(),
        None => explain(m, x, targets, method, opts)?.attr,
    };
    let mut best = vec![0f32; targets.len()];
    for c in copies {
        if !wanted() {
            return Ok(None);
        }
        let e = explain(m, &c?, targets, method, opts)?.attr;
        for (b, v) in best.iter_mut().zip(relative_change(&base, &e)?) {
            *b = b.max(v);
        }
    }
    Ok(Some(best))
}

/// Captum's default perturbation for `sensitivity_max`: `draws` copies of
/// `x` plus noise uniform in [-radius, radius] per value (not clipped),
/// seeded by `seed`, each made when taken.
pub fn noisy_copies(
    x: &Tensor,
    draws: usize,
    radius: f32,
    seed: u64,
) -> impl Iterator<Item = Result<Tensor>> + '_ {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = x.elem_count();
    (0..draws).map(move |_| {
        let noise: Vec<f32> = (0..n).map(|_| rng.gen_range(-radius..=radius)).collect();
        Ok((x + Tensor::from_vec(noise, x.shape(), x.device())?)?)
    })
}

/// Captum's `sensitivity_max` with its default perturbation
/// ([`noisy_copies`]).
#[allow(clippy::too_many_arguments)]
pub fn sensitivity_max(
    m: &Model,
    x: &Tensor,
    targets: &[u32],
    method: Method,
    opts: &Options,
    draws: usize,
    radius: f32,
    seed: u64,
) -> Result<Vec<f32>> {
    let copies = noisy_copies(x, draws, radius, seed);
    let best = sensitivity_max_over(m, x, targets, method, opts, None, copies, &mut || true)?;
    Ok(best.unwrap_or_default())
}

/// Per sample, the share of the absolute attribution (summed over the
/// channels) that falls on pixels `background[i][p]`.
pub fn background_share(attr: &Tensor, background: &[Vec<bool>]) -> Result<Vec<f32>> {
    let (n, c, h, w) = attr.dims4()?;
    let a = attr.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let hw = h * w;
    Ok((0..n)
        .map(|i| {
            let (mut bg, mut all) = (0f64, 0f64);
            for ch in 0..c {
                for p in 0..hw {
                    let v = a[(i * c + ch) * hw + p].abs() as f64;
                    all += v;
                    if background[i].get(p).copied().unwrap_or(false) {
                        bg += v;
                    }
                }
            }
            if all > 0.0 {
                (bg / all) as f32
            } else {
                0.0
            }
        })
        .collect())
}

/// RISE's deletion metric: pixels are set to 0 (black, every channel) in
/// order of the attribution summed over the channels, largest first (ties:
/// lower pixel index first), `step` pixels at a time; the softmax
/// probability of each sample's target is read before the first and after
/// every step, and the curve's area is the trapezoid rule over [0, 1]
/// (RISE's `auc`). Returns the area per sample (lower: the attribution
/// found the evidence).
pub fn deletion_auc(
    m: &Model,
    x: &Tensor,
    targets: &[u32],
    attr: &Tensor,
    step: usize,
) -> Result<Vec<f32>> {
    let (n, c, h, w) = x.dims4()?;
    let hw = h * w;
    let step = step.clamp(1, hw.max(1));
    let a = attr.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let scores: Vec<f32> = a.sum(1)?.flatten_all()?.to_vec1()?;
    let orders: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let s = &scores[i * hw..(i + 1) * hw];
            let mut o: Vec<usize> = (0..hw).collect();
            o.sort_by(|&p, &q| s[q].total_cmp(&s[p]).then(p.cmp(&q)));
            o
        })
        .collect();
    let mut img = x
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let steps = hw.div_ceil(step);
    let mut curves = vec![Vec::with_capacity(steps + 1); n];
    for k in 0..=steps {
        let t = Tensor::from_slice(&img, (n, c, h, w), x.device())?.to_dtype(x.dtype())?;
        let p = candle_nn::ops::softmax_last_dim(&m.logits(&t)?.to_dtype(DType::F32)?)?
            .to_device(&Device::Cpu)?
            .to_vec2::<f32>()?;
        for i in 0..n {
            curves[i].push(p[i][targets[i] as usize]);
        }
        if k < steps {
            for (i, order) in orders.iter().enumerate() {
                for &px in &order[k * step..((k + 1) * step).min(hw)] {
                    for ch in 0..c {
                        img[(i * c + ch) * hw + px] = 0.0;
                    }
                }
            }
        }
    }
    Ok(curves
        .iter()
        .map(|s| {
            let l = s.len();
            if l < 2 {
                return s.first().copied().unwrap_or(0.0);
            }
            let sum: f64 = s.iter().map(|v| *v as f64).sum();
            ((sum - s[0] as f64 / 2.0 - s[l - 1] as f64 / 2.0) / (l - 1) as f64) as f32
        })
        .collect())
}

/// How the perturbation of one kind and level moves an explanation.
#[derive(Clone, Debug, Serialize)]
pub struct PerturbSensitivity {
    /// The perturbation's name (`hue`), level and label (`hue 0.2`).
    pub name: String,
    pub level: usize,
    pub label: String,
    /// Mean over the samples of ||E(x) - E(P(x))|| / ||E(x)||.
    pub mean: f64,
}

/// One model's explanation numbers on the first `samples` images of a set
/// (`eval --explain`; JSON shape in docs/json.md).
#[derive(Clone, Debug, Serialize)]
pub struct ExplainReport {
    pub method: Method,
    pub samples: usize,
    /// Captum's `sensitivity_max` (10 draws of uniform noise of radius
    /// 0.02, seeded), mean and largest over the samples.
    pub sensitivity_max_mean: f64,
    pub sensitivity_max_max: f64,
    /// The same ratio under each colour perturbation at each level (the
    /// paper's non-semantic perturbations: the explanation should not move).
    pub colour_sensitivity: Vec<PerturbSensitivity>,
    /// The colour-shift set only: the mean share of the absolute
    /// attribution on the (tinted) background.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background_share: Option<f64>,
    /// RISE's deletion AUC (one image row of pixels per step), mean.
    pub deletion_auc: f64,
}

/// Draws for [`sensitivity_max`] (Captum's default).
pub const SENSITIVITY_DRAWS: usize = 10;
/// Noise radius for [`sensitivity_max`] (Captum's default).
pub const SENSITIVITY_RADIUS: f32 = 0.02;

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64
}

/// The explanation numbers of `m` for the true labels of the first
/// `samples` images of `set` (already fitted to the model's channels).
pub fn report(
    m: &Model,
    set: &ImageSet,
    method: Method,
    opts: &Options,
    samples: usize,
    seed: u64,
) -> Result<ExplainReport> {
    let n = samples.min(set.len());
    if n == 0 {
        return Err(crate::invalid!("no images to explain"));
    }
    let one = set.select(&(0..n).collect::<Vec<_>>());
    let shape = (n, one.channels, one.height, one.width);
    let pixels = one.data.to_f32();
    let x = Tensor::from_slice(&pixels, shape, &m.device)?;
    let y = one.labels.clone();
    let base = explain(m, &x, &y, method, opts)?;
    let sens = sensitivity_max(
        m,
        &x,
        &y,
        method,
        opts,
        SENSITIVITY_DRAWS,
        SENSITIVITY_RADIUS,
        seed,
    )?;
    let mut colour_sensitivity = Vec::new();
    for kind in Kind::COLOUR {
        for level in 1..=kind.levels() {
            let p = crate::perturb::apply(kind, level, &pixels, shape, seed)?;
            let xp = Tensor::from_vec(p, shape, &m.device)?;
            let e = explain(m, &xp, &y, method, opts)?;
            colour_sensitivity.push(PerturbSensitivity {
                name: kind.name().to_string(),
                level,
                label: kind.param_label(level, one.height.min(one.width)),
                mean: mean(&relative_change(&base.attr, &e.attr)?),
            });
        }
    }
    let background_share = if colour::is_colour_shift(set) {
        let hw = one.height * one.width;
        let masks: Vec<Vec<bool>> = (0..n)
            .map(|i| {
                colour::background(&pixels[i * one.image_len()..(i + 1) * one.image_len()], hw)
            })
            .collect();
        Some(mean(&background_share(&base.attr, &masks)?))
    } else {
        None
    };
    let deletion = deletion_auc(m, &x, &y, &base.attr, one.width)?;
    Ok(ExplainReport {
        method,
        samples: n,
        sensitivity_max_mean: mean(&sens),
        sensitivity_max_max: sens.iter().fold(0f32, |a, &b| a.max(b)) as f64,
        colour_sensitivity,
        background_share,
        deletion_auc: mean(&deletion),
    })
}
