//! The per-model numbers of the current view, in one place for the panels
//! and for [`export`](crate::tui::export): for each model its clean result,
//! its result at every level of the current perturbation and under every
//! PGD ε, each with its job (state, final or partial so far).
//!
//! The accuracy, DS, PGD and sample panels draw these rows; export writes
//! them to `view.json` and charts their final values.

use crate::engine::JobKey;
use crate::eval::{Clean, PerturbRow, PgdRow};
use crate::tui::app::{App, JobState};

/// One job's cell of a model's row: its key and the result shown for it.
pub struct Entry<'a, T> {
    app: &'a App,
    pub key: JobKey,
    /// The final result, else (clean and perturbation jobs) the one over the
    /// samples done so far.
    pub value: Option<&'a T>,
}

impl<'a, T> Entry<'a, T> {
    fn new(app: &'a App, key: JobKey, value: Option<&'a T>) -> Self {
        Entry { app, key, value }
    }

    /// What the job is doing (a table cell shows it until a value is in).
    pub fn state(&self) -> JobState<'a> {
        self.app.state(&self.key)
    }

    /// Whether the value is the job's final result.
    pub fn is_final(&self) -> bool {
        self.app.is_final(&self.key)
    }

    /// How many samples the value covers while the job still runs.
    pub fn partial_samples(&self) -> Option<usize> {
        self.app.partial_samples(&self.key)
    }

    /// The value once final (charts and the Δ, median and discontinuity
    /// columns show only finished numbers).
    pub fn final_value(&self) -> Option<&'a T> {
        self.value.filter(|_| self.is_final())
    }
}

/// A model's row of the current view.
pub struct ModelRow<'a> {
    pub model: usize,
    pub name: &'a str,
    pub clean: Entry<'a, Clean>,
    /// Levels 1..=levels of the current perturbation, in order.
    pub levels: Vec<Entry<'a, PerturbRow>>,
    /// One per configured PGD setting (`Meta::pgd`), in order; PGD streams
    /// no partial result, so a value is always final.
    pub pgd: Vec<Entry<'a, PgdRow>>,
}

/// A model's predictions for one sample before and after a perturbation,
/// and the sample's DS.
pub struct SamplePreds {
    pub before: Option<u32>,
    pub after: Option<u32>,
    pub ds: Option<f32>,
}

impl<'a> ModelRow<'a> {
    /// The entry of `level` (1-based) of the current perturbation.
    pub fn level(&self, level: usize) -> &Entry<'a, PerturbRow> {
        &self.levels[level - 1]
    }

    /// Sample `index` before and at `level` of the current perturbation.
    pub fn sample(&self, index: usize, level: usize) -> SamplePreds {
        let row = self.level(level).value;
        SamplePreds {
            before: self.clean.value.and_then(|c| c.preds.get(index).copied()),
            after: row.and_then(|r| r.preds.get(index).copied()),
            ds: row.and_then(|r| r.ds.get(index).copied()),
        }
    }
}

/// Every model's row for the current perturbation.
pub fn rows(app: &App) -> Vec<ModelRow<'_>> {
    let kind = app.kind();
    (0..app.n_models())
        .map(|m| ModelRow {
            model: m,
            name: &app.meta.models[m],
            clean: Entry::new(app, JobKey::Clean { model: m }, app.clean(m)),
            levels: (1..=kind.levels())
                .map(|level| {
                    let key = JobKey::Perturb {
                        model: m,
                        kind,
                        level,
                    };
                    Entry::new(app, key, app.perturb(m, kind, level))
                })
                .collect(),
            pgd: (0..app.meta.pgd.len())
                .map(|e| {
                    let key = JobKey::Pgd {
                        model: m,
                        eps_index: e,
                    };
                    Entry::new(app, key, app.pgd(m, e))
                })
                .collect(),
        })
        .collect()
}
