//! What the worker computes: a job's key (everything its result depends
//! on: model, perturbation and level, PGD setting, tap, metric, set) and the
//! results it sends back under that key.

use super::sample::{ExplainMap, SampleImages};
use crate::eval::{Clean, PerturbRow, PgdRow};
use crate::explain;
use crate::metrics::embed;
use crate::metrics::kstar::{KstarReport, Metric};
use crate::model::Tap;
use crate::perturb::Kind;

/// What a job computes. Jobs are keyed by everything their result depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKey {
    Clean {
        model: usize,
    },
    Perturb {
        model: usize,
        kind: Kind,
        level: usize,
    },
    /// PGD at `settings.pgd[eps_index]`.
    Pgd {
        model: usize,
        eps_index: usize,
    },
    /// k* of `on` (the clean set, a perturbed set, or an adversarial set).
    Kstar {
        model: usize,
        tap: Tap,
        metric: Metric,
        on: KstarSet,
    },
    /// The 2-D view (PCA or t-SNE) of the same latents as [`JobKey::Kstar`].
    Embed {
        model: usize,
        tap: Tap,
        on: KstarSet,
        method: embed::Method,
    },
    /// One sample, original and perturbed (model-independent).
    Sample {
        kind: Kind,
        level: usize,
        index: usize,
    },
    /// A model's explanation of one perturbed sample (for its true label);
    /// `scored`: with its numbers too ([`ExplainScores`](super::sample::ExplainScores): a dozen more
    /// explanations and a deletion curve, so a job of its own).
    Explain {
        model: usize,
        method: explain::Method,
        kind: Kind,
        level: usize,
        index: usize,
        scored: bool,
    },
}

/// The samples a k* job computes the distribution of: each sample of the
/// evaluated set, as is, perturbed once, or attacked once (labels unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KstarSet {
    Clean,
    Perturb {
        kind: Kind,
        level: usize,
    },
    /// PGD at `settings.pgd[eps_index]`.
    Pgd {
        eps_index: usize,
    },
}

impl JobKey {
    pub fn model(&self) -> Option<usize> {
        match *self {
            JobKey::Clean { model }
            | JobKey::Perturb { model, .. }
            | JobKey::Pgd { model, .. }
            | JobKey::Kstar { model, .. }
            | JobKey::Embed { model, .. }
            | JobKey::Explain { model, .. } => Some(model),
            JobKey::Sample { .. } => None,
        }
    }
}

/// A layer's latents in two dimensions, one point per sample, with the
/// labels and the model's predictions.
#[derive(Clone, Debug)]
pub struct Embedding {
    pub method: embed::Method,
    pub points: Vec<[f64; 2]>,
    pub labels: Vec<u32>,
    pub preds: Vec<u32>,
}

#[derive(Clone, Debug)]
pub enum JobResult {
    Clean(Clean),
    Perturb(PerturbRow),
    Pgd(PgdRow),
    Kstar(KstarReport),
    Embed(Embedding),
    Sample(SampleImages),
    Explain(ExplainMap),
}
