//! The sample panel's jobs: one sample of the evaluated set before and
//! after a perturbation, and a model's explanation of that perturbed sample
//! (its heat map, how far the perturbation moved it, and, for a scored job,
//! the numbers `eval --explain` reports).

use crate::data::ImageSet;
use crate::eval;
use crate::explain;
use crate::model::Model;
use crate::perturb::Kind;
use crate::Result;

/// Pixels of one sample before and after a perturbation (CHW in [0,1]).
#[derive(Clone, Debug)]
pub struct SampleImages {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub original: Vec<f32>,
    pub perturbed: Vec<f32>,
    pub label: u32,
}

/// A model's explanation of one sample as a map over its pixels (H x W,
/// row-major, as [`explain::heat_maps`] gives it: signed for IG, else >= 0).
#[derive(Clone, Debug)]
pub struct ExplainMap {
    pub method: explain::Method,
    pub height: usize,
    pub width: usize,
    pub map: Vec<f32>,
    /// The class explained (the true label) and the model's prediction.
    pub target: u32,
    pub pred: u32,
    /// How far the perturbation moved the explanation: ||E(x) - E(P(x))|| /
    /// ||E(x)|| between the original's explanation and this one.
    pub moved: f32,
    /// The explanation's numbers, for a `scored` job.
    pub scores: Option<ExplainScores>,
}

/// The numbers `eval --explain` reports, for one explained (perturbed)
/// sample: [`explain::scores`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExplainScores {
    /// Captum's `sensitivity_max` (10 draws, radius 0.02, seeded).
    pub sensitivity_max: f32,
    /// On the colour-shift set: the share of |attribution| on the background.
    pub background_share: Option<f32>,
    /// RISE's deletion AUC (one image row of pixels per step).
    pub deletion_auc: f32,
}

/// Which explanation of which perturbed sample.
#[derive(Clone, Copy, Debug)]
pub struct Explained {
    pub method: explain::Method,
    pub kind: Kind,
    pub level: usize,
    pub index: usize,
    /// With its numbers ([`ExplainScores`]).
    pub scored: bool,
}

/// Sample `index` of `set` and its copy under `kind` at `level`.
pub fn sample(
    set: &ImageSet,
    kind: Kind,
    level: usize,
    index: usize,
    seed: u64,
) -> Result<SampleImages> {
    let (one, perturbed) = perturbed_one(set, index, kind, level, seed, Ok)?;
    Ok(SampleImages {
        channels: one.channels,
        height: one.height,
        width: one.width,
        original: one.data.into_f32(),
        perturbed,
        label: one.labels[0],
    })
}

/// `m`'s explanation of the perturbed sample (for its true label), how far
/// the perturbation moved it, and its numbers when `scored`. `None` when
/// `wanted` says the job was superseded (asked between the numbers' dozen
/// explanations).
pub fn explanation(
    m: &Model,
    set: &ImageSet,
    what: Explained,
    seed: u64,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<Option<ExplainMap>> {
    let Explained {
        method,
        kind,
        level,
        index,
        scored,
    } = what;
    let (one, perturbed) =
        perturbed_one(set, index, kind, level, seed, |s| eval::images_for(m, &s))?;
    let shape = (1, one.channels, one.height, one.width);
    let x = candle_core::Tensor::from_vec(perturbed, shape, &m.device)?;
    let target = one.labels[0];
    let opts = explain::Options::default();
    let e = explain::explain(m, &x, &[target], method, &opts)?;
    let original = one.data.to_f32();
    let x0 = candle_core::Tensor::from_slice(&original, shape, &m.device)?;
    let e0 = explain::explain(m, &x0, &[target], method, &opts)?;
    let moved = explain::scores::relative_change(&e0.attr, &e.attr)?[0];
    let map = explain::heat_maps(&e.attr, method)?
        .pop()
        .expect("one sample explained");
    let scores = if scored {
        let on = Scored {
            original: &original,
            kind,
            x: &x,
            attr: &e.attr,
            target,
            method,
        };
        match explain_scores(m, set, on, seed, wanted)? {
            Some(sc) => Some(sc),
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(ExplainMap {
        method,
        height: one.height,
        width: one.width,
        map,
        target,
        pred: e.preds[0],
        moved,
        scores,
    }))
}

/// What the numbers are taken of: the explained (perturbed) image `x`
/// (`[1, C, H, W]`) with its attributions, and the image before the
/// perturbation `kind` (CHW).
struct Scored<'a> {
    original: &'a [f32],
    kind: Kind,
    x: &'a candle_core::Tensor,
    attr: &'a candle_core::Tensor,
    target: u32,
    method: explain::Method,
}

/// The numbers of one explained image as `eval --explain` computes them
/// over many: Captum's `sensitivity_max` (the same seeded draws as
/// [`explain::scores::sensitivity_max`], `wanted` asked between them:
/// `None` once superseded), the share on the
/// background (colour-shift sets, for perturbations that keep every pixel
/// in place: the colour ones and noise, whose background pixels are those
/// of the original), and deletion AUC.
fn explain_scores(
    m: &Model,
    set: &ImageSet,
    on: Scored,
    seed: u64,
    wanted: &mut dyn FnMut() -> bool,
) -> Result<Option<ExplainScores>> {
    use explain::scores;
    let opts = explain::Options::default();
    let Scored {
        original,
        kind,
        x,
        attr,
        target,
        method,
    } = on;
    let copies = scores::noisy_copies(
        x,
        scores::SENSITIVITY_DRAWS,
        scores::SENSITIVITY_RADIUS,
        seed,
    );
    let targets = [target];
    let Some(sens) =
        scores::sensitivity_max_over(m, x, &targets, method, &opts, Some(attr), copies, wanted)?
    else {
        return Ok(None);
    };
    if !wanted() {
        return Ok(None);
    }
    let (_, _, h, w) = x.dims4()?;
    let in_place = Kind::COLOUR.contains(&kind) || kind == Kind::Noise;
    let background_share = if in_place && crate::data::colour::is_colour_shift(set) {
        let mask = crate::data::colour::background(original, h * w);
        Some(scores::background_share(attr, &[mask])?[0])
    } else {
        None
    };
    let deletion_auc = scores::deletion_auc(m, x, &[target], attr, w)?[0];
    Ok(Some(ExplainScores {
        sensitivity_max: sens[0],
        background_share,
        deletion_auc,
    }))
}

/// Image `index` of `set` (clamped to the set), fitted by `fit`, and its
/// copy under `kind` at `level`, from the same random stream as the
/// metrics' perturbation of that image.
pub fn perturbed_one(
    set: &ImageSet,
    index: usize,
    kind: Kind,
    level: usize,
    seed: u64,
    fit: impl FnOnce(ImageSet) -> Result<ImageSet>,
) -> Result<(ImageSet, Vec<f32>)> {
    let index = index.min(set.len().saturating_sub(1));
    // A folder decoded in the background: wait for this image, or its error.
    set.try_images(index, index + 1)?;
    let one = fit(set.select(&[index]))?;
    let shape = (1, one.channels, one.height, one.width);
    let perturbed = crate::perturb::apply_at(kind, level, &one.data.to_f32(), shape, seed, index)?;
    Ok((one, perturbed))
}
