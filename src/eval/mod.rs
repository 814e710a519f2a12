//! Evaluation: the numbers of one model on one dataset (clean accuracy, per
//! perturbation accuracy/DS/discontinuity, PGD accuracy, k*), computed batch
//! by batch so that a caller can stream partial results and cancel between
//! batches. The `eval` command and the TUI engine both drive these functions;
//! no metric is computed anywhere else. [`batch`] holds the batching loop
//! (out-of-memory halving) they all run in.

use crate::data::ImageSet;
use crate::metrics::kstar::KstarReport;
use crate::metrics::{accuracy, ds, pgd, Histogram, LogHistogram};
use crate::model::{Model, Tap};
use crate::perturb::{self, Kind};
use crate::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::borrow::Cow;

mod batch;
pub use batch::{batched, in_batches, is_oom};

/// Called after every batch with (done, total); returning `false` cancels.
pub type Observer<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// The images a batched computation runs over, made batch by batch: a
/// whole perturbed (or float32) copy of a large set is never held.
#[derive(Clone, Copy, Debug)]
pub enum Images<'a> {
    /// The set's own images.
    Clean,
    /// The set's images under a perturbation. Each image has its own seeded
    /// random stream ([`perturb::apply_at`]), so batching does not change them.
    Perturbed { kind: Kind, level: usize, seed: u64 },
    /// Given values with the set's geometry (`n * c * h * w`).
    Given(&'a [f32]),
}

impl Images<'_> {
    /// How many images.
    pub fn count(&self, set: &ImageSet) -> usize {
        match self {
            Images::Given(v) => v.len() / set.image_len().max(1),
            _ => set.len(),
        }
    }
    /// Images `s..e` (NCHW float32).
    pub fn get<'s>(&'s self, set: &'s ImageSet, s: usize, e: usize) -> Result<Cow<'s, [f32]>> {
        Ok(match *self {
            Images::Clean => set.try_images(s, e)?,
            Images::Perturbed { kind, level, seed } => Cow::Owned(perturb::apply_at(
                kind,
                level,
                &set.try_images(s, e)?,
                (e - s, set.channels, set.height, set.width),
                seed,
                s,
            )?),
            Images::Given(v) => {
                let l = set.image_len();
                Cow::Borrowed(&v[s * l..e * l])
            }
        })
    }
    /// Images `s..e` as one batch on `device`.
    fn tensor(&self, set: &ImageSet, s: usize, e: usize, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.get(set, s, e)?,
            (e - s, set.channels, set.height, set.width),
            device,
        )?)
    }
}

/// Images prepared for a model: gray replicated to the model's channels.
pub fn images_for(model: &Model, set: &ImageSet) -> Result<ImageSet> {
    let want = model.in_channels();
    if set.channels == want {
        return Ok(set.clone());
    }
    if set.channels == 1 {
        return Ok(set.replicate_channels(want));
    }
    Err(crate::invalid!(
        "dataset {} has {} channels but model {} takes {}",
        set.name,
        set.channels,
        model.name,
        want
    ))
}

/// A notice when gray images are replicated to the colour channels some of
/// `models` take (a model trained on colour images may do poorly on them).
pub fn gray_notice(set: &ImageSet, models: &[Model]) -> Option<String> {
    let colour: Vec<&str> = models
        .iter()
        .filter(|m| set.channels == 1 && m.in_channels() > 1)
        .map(|m| m.name.as_str())
        .collect();
    (!colour.is_empty()).then(|| {
        format!(
            "{} is gray (1 channel): replicated to the colour channels {} take{}",
            set.name,
            colour.join(", "),
            if colour.len() == 1 { "s" } else { "" }
        )
    })
}

/// Logits of `images` (with the set's geometry), row-major [n, k].
/// `None` when cancelled.
pub fn logits(
    model: &Model,
    set: &ImageSet,
    images: Images,
    batch: usize,
    obs: Observer,
) -> Result<Option<Vec<f32>>> {
    features(model, set, images, Tap::Logits, batch, obs)
}

/// Features at `tap` for `images`, row-major. `None` when cancelled.
pub fn features(
    model: &Model,
    set: &ImageSet,
    images: Images,
    tap: Tap,
    batch: usize,
    obs: Observer,
) -> Result<Option<Vec<f32>>> {
    features_with(model, set, images, tap, batch, &mut |_, done, total| {
        obs(done, total)
    })
}

/// [`features`] with an observer that also sees the rows computed so far
/// (for streaming partial results).
pub fn features_with(
    model: &Model,
    set: &ImageSet,
    images: Images,
    tap: Tap,
    batch: usize,
    obs: &mut dyn FnMut(&[f32], usize, usize) -> bool,
) -> Result<Option<Vec<f32>>> {
    in_batches(
        images.count(set),
        batch,
        |s, e| {
            let x = images.tensor(set, s, e, &model.device)?;
            Ok(model
                .features(&x, tap)?
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        },
        obs,
    )
}

/// Clean predictions and logits of a model on a set.
#[derive(Clone, Debug)]
pub struct Clean {
    pub logits: Vec<f32>,
    pub num_classes: usize,
    pub preds: Vec<u32>,
    pub accuracy: f64,
}

pub fn clean(model: &Model, set: &ImageSet, batch: usize, obs: Observer) -> Result<Option<Clean>> {
    let Some(lg) = logits(model, set, Images::Clean, batch, obs)? else {
        return Ok(None);
    };
    Ok(Some(clean_from(set, lg, model.num_classes())))
}

/// The clean result from logits of the first `logits.len() / k` samples.
pub fn clean_from(set: &ImageSet, logits: Vec<f32>, k: usize) -> Clean {
    let preds = argmax_rows(&logits, k);
    let accuracy = accuracy::accuracy(&preds, &set.labels[..preds.len()]);
    Clean {
        logits,
        num_classes: k,
        preds,
        accuracy,
    }
}

pub fn argmax_rows(v: &[f32], k: usize) -> Vec<u32> {
    v.chunks_exact(k)
        .map(|r| {
            let mut best = 0;
            for (i, x) in r.iter().enumerate() {
                if *x > r[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

/// One row of the perturbation table.
#[derive(Clone, Debug, Serialize)]
pub struct PerturbRow {
    pub name: String,
    pub level: usize,
    pub param: f64,
    pub label: String,
    pub accuracy: f64,
    pub ds_mean: f64,
    pub ds_median: f64,
    pub discontinuity_rate: f64,
    pub ds_histogram: Histogram,
    /// The same DS over log-spaced bins (heavy tails).
    pub ds_histogram_log: LogHistogram,
    /// Per-sample values for the sample viewer (not in the JSON report).
    #[serde(skip)]
    pub ds: Vec<f32>,
    #[serde(skip)]
    pub preds: Vec<u32>,
    /// k* of the perturbed set (each sample perturbed once, labels
    /// unchanged, k* among the perturbed samples), with its accuracies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kstar: Option<KstarReport>,
}

pub const DS_BINS: usize = 20;

/// Accuracy, DS and continuity of `model` under a perturbation.
#[allow(clippy::too_many_arguments)]
pub fn perturbation(
    model: &Model,
    set: &ImageSet,
    clean: &Clean,
    kind: Kind,
    level: usize,
    seed: u64,
    batch: usize,
    obs: Observer,
) -> Result<Option<PerturbRow>> {
    let images = Images::Perturbed { kind, level, seed };
    let Some(lg) = logits(model, set, images, batch, obs)? else {
        return Ok(None);
    };
    Ok(Some(perturb_row(set, clean, kind, level, &lg)))
}

/// The row from perturbed logits of the first `lg.len() / k` samples (all
/// of them, or a prefix while a job streams).
pub fn perturb_row(
    set: &ImageSet,
    clean: &Clean,
    kind: Kind,
    level: usize,
    lg: &[f32],
) -> PerturbRow {
    let k = clean.num_classes;
    let preds = argmax_rows(lg, k);
    let n = preds.len();
    let (clean_lg, labels) = (&clean.logits[..n * k], &set.labels[..n]);
    let dsv = ds::ds_per_sample(clean_lg, lg, k);
    let summary = ds::summarize(&dsv, DS_BINS);
    let ranks = ds::continuity_ranks(clean_lg, lg, labels, k);
    let side = set.height.min(set.width);
    PerturbRow {
        name: kind.name().to_string(),
        level,
        param: kind.param(level, side),
        label: kind.param_label(level, side),
        accuracy: accuracy::accuracy(&preds, labels),
        ds_mean: summary.mean,
        ds_median: summary.median,
        discontinuity_rate: ds::discontinuity_rate(&ranks),
        ds_histogram: summary.histogram,
        ds_histogram_log: summary.histogram_log,
        ds: dsv,
        preds,
        kstar: None,
    }
}

/// [`perturbation`], with the features of the perturbed images at `tap`
/// (the logits themselves for [`Tap::Logits`]: no second pass).
#[allow(clippy::too_many_arguments)]
pub fn perturbation_features(
    model: &Model,
    set: &ImageSet,
    clean: &Clean,
    kind: Kind,
    level: usize,
    seed: u64,
    tap: Tap,
    batch: usize,
    obs: Observer,
) -> Result<Option<(PerturbRow, Vec<f32>)>> {
    let images = Images::Perturbed { kind, level, seed };
    let taps = if tap == Tap::Logits {
        vec![Tap::Logits]
    } else {
        vec![Tap::Logits, tap]
    };
    let Some(mut out) = features_many(model, set, images, &taps, batch, obs)? else {
        return Ok(None);
    };
    let f = out.pop().expect("one output per tap");
    let lg = out.pop().unwrap_or_else(|| f.clone());
    Ok(Some((perturb_row(set, clean, kind, level, &lg), f)))
}

/// Features at each of `taps` for every image, one forward pass per batch
/// ([`Model::features_many`]).
pub fn features_many(
    model: &Model,
    set: &ImageSet,
    images: Images,
    taps: &[Tap],
    batch: usize,
    obs: Observer,
) -> Result<Option<Vec<Vec<f32>>>> {
    let parts = in_batches(
        images.count(set),
        batch,
        |s, e| {
            let x = images.tensor(set, s, e, &model.device)?;
            let outs = model
                .features_many(&x, taps)?
                .into_iter()
                .map(|t| Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?))
                .collect::<Result<Vec<_>>>()?;
            // One element per image batch: its per-tap outputs.
            Ok(vec![(e - s, outs)])
        },
        |so_far, _, total| {
            let done: usize = so_far.iter().map(|(k, _)| k).sum();
            obs(done, total)
        },
    )?;
    let Some(parts) = parts else {
        return Ok(None);
    };
    let mut out = vec![Vec::new(); taps.len()];
    for (_, outs) in parts {
        for (o, v) in out.iter_mut().zip(outs) {
            o.extend(v);
        }
    }
    Ok(Some(out))
}

#[derive(Clone, Debug, Serialize)]
pub struct PgdRow {
    pub eps: f64,
    pub step: f64,
    pub iters: usize,
    pub random_start: bool,
    pub accuracy: f64,
    #[serde(skip)]
    pub preds: Vec<u32>,
    /// k* of the adversarial set (each sample attacked once), with its
    /// accuracies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kstar: Option<KstarReport>,
}

/// Adversarial accuracy under PGD, batch by batch.
pub fn pgd_accuracy(
    model: &Model,
    set: &ImageSet,
    cfg: &pgd::PgdConfig,
    batch: usize,
    obs: Observer,
) -> Result<Option<PgdRow>> {
    Ok(pgd_features(model, set, cfg, None, batch, obs)?.map(|(row, _)| row))
}

/// [`pgd_accuracy`], with the features of the adversarial images at `tap`
/// when one is given (from the same forward pass as their logits).
pub fn pgd_features(
    model: &Model,
    set: &ImageSet,
    cfg: &pgd::PgdConfig,
    tap: Option<Tap>,
    batch: usize,
    obs: Observer,
) -> Result<Option<(PgdRow, Vec<f32>)>> {
    let taps: Vec<Tap> = match tap {
        None | Some(Tap::Logits) => vec![Tap::Logits],
        Some(t) => vec![Tap::Logits, t],
    };
    let out = in_batches(
        set.len(),
        batch,
        |s, e| {
            let x = set.batch(s, e, &model.device)?;
            let y = set.batch_labels(s, e, &model.device)?;
            let c = pgd::PgdConfig {
                seed: cfg.seed.wrapping_add(s as u64),
                ..*cfg
            };
            let out = pgd::pgd(model, &x, &y, &c)?;
            let mut f = model.features_many(&out.x_adv.detach(), &taps)?;
            let preds = accuracy::predictions(&f[0])?;
            let feats = match tap {
                None => Vec::new(),
                Some(_) => f
                    .pop()
                    .expect("one output per tap")
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            };
            Ok(vec![(preds, feats)])
        },
        |so_far, _, n| obs(so_far.iter().map(|(p, _)| p.len()).sum(), n),
    )?;
    let Some(out) = out else {
        return Ok(None);
    };
    let (mut preds, mut feats) = (Vec::new(), Vec::new());
    for (p, f) in out {
        preds.extend(p);
        feats.extend(f);
    }
    Ok(Some((
        PgdRow {
            eps: cfg.eps as f64,
            step: cfg.step as f64,
            iters: cfg.iters,
            random_start: cfg.random_start,
            accuracy: accuracy::accuracy(&preds, &set.labels),
            preds,
            kstar: None,
        },
        feats,
    )))
}

/// k* analysis of features (row-major, `labels.len()` rows) at `tap`;
/// with the model's predictions of those samples, the report carries the
/// accuracies per class and per pattern group.
pub fn kstar(
    features: &[f32],
    labels: &[u32],
    preds: Option<&[u32]>,
    class_names: &[String],
    tap: Tap,
    metric: crate::metrics::kstar::Metric,
    device: &Device,
) -> Result<KstarReport> {
    use crate::metrics::kstar;
    let dim = features.len() / labels.len().max(1);
    let correct: Option<Vec<bool>> =
        preds.map(|p| p.iter().zip(labels).map(|(a, b)| a == b).collect());
    let mut r = kstar::analyze_with(
        features,
        dim,
        labels,
        correct.as_deref(),
        class_names,
        metric,
        kstar::Thresholds::default(),
        device,
    )?;
    r.layer = tap.to_string();
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_rows_picks_first_maximum() {
        assert_eq!(argmax_rows(&[0.0, 2.0, 2.0, 5.0, 1.0, 0.0], 3), vec![1, 0]);
    }
}
