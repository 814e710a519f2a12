//! What the explorer asks of the engine and what it got back: the results
//! as the panels read them (finished, else partial), the state of each job,
//! engine events applied to [`App`], and the jobs the current view needs in
//! priority order ([`App::tiers`], [`App::request`]).

use super::app::{eps_label, metric_name, App, JobState, KstarShow, KstarView, Progress};
use crate::engine::{Embedding, Event, ExplainMap, JobKey, JobResult, KstarSet, SampleImages};
use crate::eval::{Clean, PerturbRow, PgdRow};
use crate::metrics::embed::Method;
use crate::metrics::kstar::KstarReport;
use crate::perturb::Kind;
use std::collections::HashMap;
use std::time::Instant;

impl App {
    // ---- results (the only place that looks inside JobResult) ----

    /// A finished result, else the partial one streamed so far.
    pub(super) fn shown(&self, key: &JobKey) -> Option<&JobResult> {
        self.results
            .get(key)
            .or_else(|| self.partials.get(key))
            .map(|r| &**r)
    }

    pub fn clean(&self, model: usize) -> Option<&Clean> {
        match self.shown(&JobKey::Clean { model }) {
            Some(JobResult::Clean(c)) => Some(c),
            _ => None,
        }
    }
    pub fn perturb(&self, model: usize, kind: Kind, level: usize) -> Option<&PerturbRow> {
        let key = JobKey::Perturb { model, kind, level };
        match self.shown(&key) {
            Some(JobResult::Perturb(p)) => Some(p),
            _ => None,
        }
    }
    pub fn pgd(&self, model: usize, eps_index: usize) -> Option<&PgdRow> {
        match self
            .results
            .get(&JobKey::Pgd { model, eps_index })
            .map(|r| &**r)
        {
            Some(JobResult::Pgd(p)) => Some(p),
            _ => None,
        }
    }
    pub fn kstar(&self, model: usize) -> Option<&KstarReport> {
        let key = self.kstar_key(model);
        match self.results.get(&key).map(|r| &**r) {
            Some(JobResult::Kstar(k)) => Some(k),
            _ => None,
        }
    }
    /// The shown sample, original and perturbed at the current level.
    pub fn sample_images(&self) -> Option<&SampleImages> {
        match self.results.get(&self.sample_key()).map(|r| &**r) {
            Some(JobResult::Sample(s)) => Some(s),
            _ => None,
        }
    }
    /// The explanation job of `model` for the shown sample at the current
    /// level, when the sample panel shows explanations (`x`).
    pub fn explain_key(&self, model: usize) -> Option<JobKey> {
        self.explain_job(model, false)
    }
    /// The job of the same explanation with its numbers.
    pub fn explain_scores_key(&self, model: usize) -> Option<JobKey> {
        self.explain_job(model, true)
    }
    fn explain_job(&self, model: usize, scored: bool) -> Option<JobKey> {
        let (kind, level) = self.current();
        Some(JobKey::Explain {
            model,
            method: self.explain?,
            kind,
            level,
            index: self.sample,
            scored,
        })
    }
    /// `model`'s finished explanation of the shown sample, if asked for
    /// (the scored job's once it is in, else the map's).
    pub fn explanation(&self, model: usize) -> Option<&ExplainMap> {
        let scored = self.explain_scores_key(model)?;
        let plain = self.explain_key(model)?;
        [scored, plain]
            .iter()
            .find_map(|k| match self.results.get(k).map(|r| &**r) {
                Some(JobResult::Explain(e)) => Some(e),
                _ => None,
            })
    }
    /// The k* job of the set the panel shows (`kstar_on`).
    pub fn kstar_key(&self, model: usize) -> JobKey {
        let (kind, level) = self.current();
        let on = match self.kstar_on {
            KstarView::Clean => KstarSet::Clean,
            KstarView::Current => KstarSet::Perturb { kind, level },
            KstarView::Pgd(eps_index) => KstarSet::Pgd { eps_index },
        };
        JobKey::Kstar {
            model,
            tap: self.tap,
            metric: self.metric,
            on,
        }
    }
    /// The k* job of the clean set at the same layer and distance (what a
    /// transformed set's k* is compared with).
    pub fn kstar_clean_key(&self, model: usize) -> JobKey {
        JobKey::Kstar {
            model,
            tap: self.tap,
            metric: self.metric,
            on: KstarSet::Clean,
        }
    }
    /// The 2-D view the k* panel shows instead of its class table (`s`), of
    /// the same latents as its k*; `None` when it shows the table.
    pub fn embed_key(&self, model: usize) -> Option<JobKey> {
        let method = match self.kstar_show {
            KstarShow::Classes => return None,
            KstarShow::Pca => Method::Pca,
            KstarShow::Tsne => Method::Tsne,
        };
        let JobKey::Kstar { tap, on, .. } = self.kstar_key(model) else {
            unreachable!("kstar_key is a k* key")
        };
        Some(JobKey::Embed {
            model,
            tap,
            on,
            method,
        })
    }
    /// The finished 2-D view of the selected model, if asked for.
    pub fn embedding(&self, model: usize) -> Option<&Embedding> {
        match self.results.get(&self.embed_key(model)?).map(|r| &**r) {
            Some(JobResult::Embed(e)) => Some(e),
            _ => None,
        }
    }
    /// The clean set's k* report, when the panel shows another set.
    pub fn kstar_clean(&self, model: usize) -> Option<&KstarReport> {
        let key = self.kstar_clean_key(model);
        if key == self.kstar_key(model) {
            return None;
        }
        match self.results.get(&key).map(|r| &**r) {
            Some(JobResult::Kstar(k)) => Some(k),
            _ => None,
        }
    }
    /// What the k* panel shows, in words ("clean", "hue 0.2", "PGD 2/255").
    pub fn kstar_set_label(&self) -> String {
        match self.kstar_on {
            KstarView::Clean => "clean".into(),
            KstarView::Current => {
                let (kind, level) = self.current();
                self.label(kind, level)
            }
            KstarView::Pgd(i) => {
                let eps = self.meta.pgd.get(i).map(|p| p.eps).unwrap_or(0.0);
                format!("PGD {}", eps_label(eps))
            }
        }
    }
    pub fn sample_key(&self) -> JobKey {
        let (kind, level) = self.current();
        JobKey::Sample {
            kind,
            level,
            index: self.sample,
        }
    }

    /// How many samples the partial result shown for `key` covers: `Some`
    /// only while the job runs and has streamed a result over its first
    /// batches (the tables then show it marked as partial).
    pub fn partial_samples(&self, key: &JobKey) -> Option<usize> {
        if !matches!(self.state(key), JobState::Running { .. }) {
            return None;
        }
        match self.partials.get(key).map(|r| &**r)? {
            JobResult::Clean(c) => Some(c.preds.len()),
            JobResult::Perturb(p) => Some(p.preds.len()),
            _ => None,
        }
    }

    /// Whether `key` has its final result (not only a partial one).
    pub fn is_final(&self, key: &JobKey) -> bool {
        self.results.contains_key(key)
    }

    /// What a table cell for `key` shows.
    pub fn state(&self, key: &JobKey) -> JobState<'_> {
        if let Some(r) = self.results.get(key) {
            return JobState::Done(r);
        }
        if let Some(e) = self.failures.get(key) {
            return JobState::Failed(e);
        }
        match self.running() {
            Some(p) if p.key == *key => JobState::Running {
                done: p.done,
                total: p.total,
            },
            _ if self.requested.contains(key) => JobState::Queued,
            _ => JobState::Idle,
        }
    }

    /// The running job: the one last reporting progress if it is still
    /// wanted, else the first unfinished job asked for (the engine works
    /// through the list in order; its first batch has not reported yet).
    pub fn running(&self) -> Option<Progress> {
        let reported = self
            .progress
            .filter(|p| self.requested.contains(&p.key) && !self.results.contains_key(&p.key));
        reported.or_else(|| {
            self.requested
                .iter()
                .find(|k| !self.results.contains_key(k) && !self.failures.contains_key(k))
                .map(|&key| Progress {
                    key,
                    done: 0,
                    total: self.meta.samples,
                })
        })
    }

    /// Jobs asked for and not finished.
    pub fn pending(&self) -> usize {
        self.requested
            .iter()
            .filter(|k| !self.results.contains_key(k) && !self.failures.contains_key(k))
            .count()
    }

    // ---- engine events ----

    /// Applies an engine event. Returns whether anything visible changed.
    pub fn on_event(&mut self, ev: Event) -> bool {
        match ev {
            Event::Progress { key, done, total } => {
                self.progress = Some(Progress { key, done, total });
                true
            }
            Event::Partial { key, result } => {
                if !fits(&key, &result) || self.results.contains_key(&key) {
                    return false;
                }
                self.partials.insert(key, result);
                true
            }
            Event::Done { key, result } => {
                if !fits(&key, &result) {
                    return false;
                }
                self.partials.remove(&key);
                if self.progress.map(|p| p.key) == Some(key) {
                    self.progress = None;
                }
                self.failures.remove(&key);
                self.results.insert(key, result);
                true
            }
            Event::Failed { key, error } => {
                if self.progress.map(|p| p.key) == Some(key) {
                    self.progress = None;
                }
                self.message = Some((
                    format!("{} failed: {error}", self.describe(&key)),
                    Instant::now(),
                ));
                self.failures.insert(key, error);
                true
            }
            Event::Speed { images_per_sec } => {
                self.speed = Some(images_per_sec);
                true
            }
            Event::Stopped => {
                self.engine_stopped = true;
                true
            }
        }
    }

    // ---- what the view needs ----

    /// Models in priority order: the selected one first.
    pub(super) fn model_order(&self) -> Vec<usize> {
        std::iter::once(self.model)
            .chain((0..self.n_models()).filter(|&m| m != self.model))
            .collect()
    }

    /// The jobs the view needs, grouped in tiers of decreasing priority:
    /// (1) the sample (and its neighbours), then clean and the current level
    /// per model (selected model first); with explanations shown (`x`), each
    /// model's explanation of the sample; (2) the other levels of the
    /// current perturbation; (3) k* at the current layer and distance; then
    /// the explanations' numbers; (4) PGD at every eps; (5) prefetch: every
    /// other perturbation level, nearest in the list first. k* comes before PGD because PGD costs about
    /// 2·iters+1 forward passes and would otherwise hold k* back for minutes on a CPU.
    pub fn tiers(&self) -> Vec<Vec<JobKey>> {
        let (kind, level) = self.current();
        let models = self.model_order();
        // The neighbouring samples cost milliseconds: asked right after the
        // shown one so that n/p are instant (they do not hold later tiers back).
        let n = self.meta.samples.max(1);
        let mut t1 = vec![self.sample_key()];
        for index in [(self.sample + 1) % n, (self.sample + n - 1) % n] {
            t1.push(JobKey::Sample { kind, level, index });
        }
        for &m in &models {
            t1.push(JobKey::Clean { model: m });
            t1.push(JobKey::Perturb {
                model: m,
                kind,
                level,
            });
        }
        // The explanations of the shown sample (`x`), every model's, right
        // after the first numbers: the user asked for them.
        let t_explain: Vec<JobKey> = models.iter().filter_map(|&m| self.explain_key(m)).collect();
        let mut others: Vec<usize> = (1..=kind.levels()).filter(|&l| l != level).collect();
        others.sort_by_key(|&l| (l as isize - level as isize).abs());
        let mut t2 = Vec::new();
        for &l in &others {
            for &m in &models {
                t2.push(JobKey::Perturb {
                    model: m,
                    kind,
                    level: l,
                });
            }
        }
        // k* of the shown set, then of the clean set it is compared with.
        // For a PGD set, the attack itself first: its logits are kept and
        // reused, so the k* (and the 2-D view) need no attack of their own.
        let mut t3: Vec<JobKey> = Vec::new();
        if let KstarView::Pgd(eps_index) = self.kstar_on {
            t3.extend(models.iter().map(|&model| JobKey::Pgd { model, eps_index }));
        }
        t3.extend(models.iter().map(|&m| self.kstar_key(m)));
        t3.extend(models.iter().map(|&m| self.kstar_clean_key(m)));
        // The 2-D view, of the selected model only.
        t3.extend(self.embed_key(self.model));
        let mut t4 = Vec::new();
        for e in 0..self.meta.pgd.len() {
            for &m in &models {
                t4.push(JobKey::Pgd {
                    model: m,
                    eps_index: e,
                });
            }
        }
        let mut t5 = Vec::new();
        let len = self.items.len();
        for d in 1..len {
            for i in [(self.item + d) % len, (self.item + len - d % len) % len] {
                let (k, l) = self.items[i];
                if k == kind {
                    continue;
                }
                for &m in &models {
                    t5.push(JobKey::Perturb {
                        model: m,
                        kind: k,
                        level: l,
                    });
                }
            }
        }
        // The explanations' numbers (a dozen explanations each): after k*.
        let t_scores: Vec<JobKey> = models
            .iter()
            .filter_map(|&m| self.explain_scores_key(m))
            .collect();
        vec![t1, t_explain, t2, t3, t_scores, t4, t5]
    }

    /// Whether `key` must be finished before later tiers are asked for
    /// (everything but the prefetched neighbouring samples).
    pub(super) fn blocking(&self, key: &JobKey) -> bool {
        !matches!(key, JobKey::Sample { index, .. } if *index != self.sample)
    }

    /// Every job the view needs, in priority order, without duplicates or
    /// jobs that failed.
    pub fn wanted(&self) -> Vec<JobKey> {
        let mut out = Vec::new();
        for t in self.tiers() {
            push_unique(&mut out, &t, &self.failures);
        }
        out
    }

    /// What to send to the engine: [`App::wanted`] cut after the first tier
    /// that is not finished. A job of a later tier is thus superseded as soon
    /// as the user moves to a view whose first numbers are missing.
    pub fn request(&self) -> Vec<JobKey> {
        let mut out = Vec::new();
        for t in self.tiers() {
            push_unique(&mut out, &t, &self.failures);
            let open = t.iter().any(|k| {
                self.blocking(k) && !self.results.contains_key(k) && !self.failures.contains_key(k)
            });
            if open {
                break;
            }
        }
        out
    }

    /// The request when it differs from the one last sent (and records it).
    pub fn take_request(&mut self) -> Option<Vec<JobKey>> {
        let r = self.request();
        if r == self.requested {
            return None;
        }
        self.requested = r.clone();
        Some(r)
    }

    /// Whether the first tier (sample, clean and current level of every model) is in.
    pub fn view_ready(&self) -> bool {
        self.tiers()[0].iter().all(|k| {
            !self.blocking(k) || self.results.contains_key(k) || self.failures.contains_key(k)
        })
    }

    /// A short description of a job for the status line.
    pub fn describe(&self, key: &JobKey) -> String {
        let model = |m: usize| self.meta.models.get(m).cloned().unwrap_or_default();
        match *key {
            JobKey::Clean { model: m } => format!("clean [{}]", model(m)),
            JobKey::Perturb {
                model: m,
                kind,
                level,
            } => format!("{} [{}]", self.label(kind, level), model(m)),
            JobKey::Pgd {
                model: m,
                eps_index,
            } => {
                let eps = self.meta.pgd.get(eps_index).map(|p| p.eps).unwrap_or(0.0);
                format!("PGD {} [{}]", eps_label(eps), model(m))
            }
            JobKey::Kstar {
                model: m,
                tap,
                metric,
                on,
            } => {
                let set = match on {
                    KstarSet::Clean => "clean".to_string(),
                    KstarSet::Perturb { kind, level } => self.label(kind, level),
                    KstarSet::Pgd { eps_index } => {
                        let eps = self.meta.pgd.get(eps_index).map(|p| p.eps).unwrap_or(0.0);
                        format!("PGD {}", eps_label(eps))
                    }
                };
                format!("k* {set} {tap}/{} [{}]", metric_name(metric), model(m))
            }
            JobKey::Embed {
                model: m, method, ..
            } => format!("{} of {} [{}]", method.name(), self.tap, model(m)),
            JobKey::Sample { index, .. } => format!("sample {}", index + 1),
            JobKey::Explain {
                model: m,
                method,
                index,
                scored,
                ..
            } => format!(
                "{}{} of sample {} [{}]",
                method.title(),
                if scored { " numbers" } else { "" },
                index + 1,
                model(m)
            ),
        }
    }
}

/// Whether a result is of the kind its key promises (and for perturbation
/// rows, of the same level): a defensive check on top of the engine's
/// guarantee that results travel with their own key.
pub fn fits(key: &JobKey, result: &JobResult) -> bool {
    match (key, result) {
        (JobKey::Clean { .. }, JobResult::Clean(_)) => true,
        (JobKey::Perturb { level, .. }, JobResult::Perturb(r)) => r.level == *level,
        (JobKey::Pgd { .. }, JobResult::Pgd(_)) => true,
        (JobKey::Kstar { .. }, JobResult::Kstar(_)) => true,
        (JobKey::Embed { method, .. }, JobResult::Embed(e)) => e.method == *method,
        (JobKey::Sample { .. }, JobResult::Sample(_)) => true,
        (JobKey::Explain { method, scored, .. }, JobResult::Explain(e)) => {
            e.method == *method && e.scores.is_some() == *scored
        }
        _ => false,
    }
}

fn push_unique(out: &mut Vec<JobKey>, keys: &[JobKey], failed: &HashMap<JobKey, String>) {
    for k in keys {
        if !failed.contains_key(k) && !out.contains(k) {
            out.push(*k);
        }
    }
}
