//! The background worker. One thread owns the models, the dataset and the
//! device; the UI sends it the list of jobs the current view needs (in
//! priority order) and receives events: progress per batch, partial and final
//! results, failures, status. A running job that is no longer wanted is
//! superseded between batches; finished results are cached by key, and every
//! result travels with the key it was computed for.

use crate::data::ImageSet;
use crate::eval;
use crate::metrics::embed;
use crate::metrics::pgd::PgdConfig;
use crate::model::{Model, Tap};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod job;
mod sample;
pub use job::{Embedding, JobKey, JobResult, KstarSet};
pub use sample::{ExplainMap, ExplainScores, SampleImages};

/// Logits kept from perturbation and PGD jobs for the k* of those sets (no
/// second forward pass, nor a second attack), up to this many values in all
/// (64 MB: 2,000 samples x 10 classes take 20,000).
const KEPT_LOGITS: usize = 16 << 20;

/// The batch of a PGD job: about 2·iters+1 forward passes each, so on the
/// CPU that much smaller, for superseding between batches to stay prompt.
fn pgd_batch(m: &Model, batch: usize, cfg: &PgdConfig) -> usize {
    if m.device.is_cpu() {
        (batch / (2 * cfg.iters + 1)).max(1)
    } else {
        batch
    }
}

/// Where [`set_features`] may find logits already computed.
struct SetSource<'a> {
    model: usize,
    settings: &'a Settings,
    logits: &'a HashMap<JobKey, Arc<Vec<f32>>>,
}

/// The predictions and the features at `tap` of the set `on` (clean,
/// perturbed, attacked): the logits a perturbation or PGD job kept when the
/// tap is the logits, else one forward pass (one attack for PGD).
fn set_features(
    m: &Model,
    set: &ImageSet,
    src: SetSource,
    tap: Tap,
    on: KstarSet,
    batch: usize,
    obs: eval::Observer,
) -> crate::Result<Option<(Vec<u32>, Vec<f32>)>> {
    let k = m.num_classes();
    let model = src.model;
    let kept = match on {
        KstarSet::Clean => None,
        KstarSet::Perturb { kind, level } => Some(JobKey::Perturb { model, kind, level }),
        KstarSet::Pgd { eps_index } => Some(JobKey::Pgd { model, eps_index }),
    }
    .and_then(|k| src.logits.get(&k).cloned())
    .filter(|_| tap == Tap::Logits);
    let taps = if tap == Tap::Logits {
        vec![tap]
    } else {
        vec![Tap::Logits, tap]
    };
    Ok(match (kept, on) {
        (Some(lg), _) => Some((eval::argmax_rows(&lg, k), (*lg).clone())),
        (None, KstarSet::Clean | KstarSet::Perturb { .. }) => {
            let images = match on {
                KstarSet::Perturb { kind, level } => eval::Images::Perturbed {
                    kind,
                    level,
                    seed: src.settings.seed,
                },
                _ => eval::Images::Clean,
            };
            eval::features_many(m, set, images, &taps, batch, obs)?.map(|mut out| {
                let f = out.pop().expect("one output per tap");
                let preds = eval::argmax_rows(out.first().unwrap_or(&f), k);
                (preds, f)
            })
        }
        (None, KstarSet::Pgd { eps_index }) => {
            let cfg = src
                .settings
                .pgd
                .get(eps_index)
                .copied()
                .ok_or_else(|| crate::invalid!("no PGD setting {eps_index}"))?;
            eval::pgd_features(m, set, &cfg, Some(tap), pgd_batch(m, batch, &cfg), obs)?
                .map(|(row, f)| (row.preds, f))
        }
    })
}

/// Keeps the logits of a finished job for the k* of its set, within
/// [`KEPT_LOGITS`]: when they do not fit beside the ones kept, the newest
/// replace the others (the view moves on; what it left is recomputed if
/// asked again).
fn keep_logits(kept: &mut HashMap<JobKey, Arc<Vec<f32>>>, key: JobKey, lg: Vec<f32>) {
    if lg.len() > KEPT_LOGITS {
        return;
    }
    let used: usize = kept.values().map(|v| v.len()).sum();
    if used + lg.len() > KEPT_LOGITS {
        kept.clear();
    }
    kept.insert(key, Arc::new(lg));
}

/// What the worker tells the UI.
#[derive(Clone, Debug)]
pub enum Event {
    /// Batches done for the running job.
    Progress {
        key: JobKey,
        done: usize,
        total: usize,
    },
    /// A result over the samples done so far (streamed while a job runs; not cached).
    Partial { key: JobKey, result: Arc<JobResult> },
    /// A finished result (also cached by the worker).
    Done { key: JobKey, result: Arc<JobResult> },
    /// The job failed; the message is one line.
    Failed { key: JobKey, error: String },
    /// Throughput of the last finished model job.
    Speed { images_per_sec: f64 },
    /// The worker has stopped (after `Shutdown` or a fatal error).
    Stopped,
}

/// What the UI asks.
#[derive(Clone, Debug)]
pub enum Request {
    /// The jobs the current view needs, most important first. Replaces the previous list.
    Want(Vec<JobKey>),
    Shutdown,
}

/// Settings fixed for a session.
#[derive(Clone, Debug)]
pub struct Settings {
    pub batch: usize,
    pub seed: u64,
    /// PGD settings offered (eps values with step/iters).
    pub pgd: Vec<PgdConfig>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch: 250,
            seed: 0,
            pgd: [2.0f32, 4.0, 8.0]
                .iter()
                .map(|e| PgdConfig::paper(e / 255.0))
                .collect(),
        }
    }
}

/// Handle held by the UI.
pub struct Engine {
    tx: Sender<Request>,
    pub events: Receiver<Event>,
    handle: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the worker thread. `set` must already be in the models' channel layout
    /// (see [`eval::images_for`]).
    pub fn start(models: Vec<Model>, set: Arc<ImageSet>, settings: Settings) -> Engine {
        let (tx, rx) = mpsc::channel();
        let (etx, erx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("semcon-engine".into())
            .spawn(move || {
                let ctl = Control {
                    rx,
                    tx: etx,
                    want: Vec::new(),
                    shutdown: false,
                };
                let mut w = Worker {
                    models,
                    set,
                    settings,
                    cache: HashMap::new(),
                    logits: HashMap::new(),
                    ctl,
                };
                w.run();
                let _ = w.ctl.tx.send(Event::Stopped);
            })
            .expect("spawning the engine thread");
        Engine {
            tx,
            events: erx,
            handle: Some(handle),
        }
    }

    pub fn want(&self, keys: Vec<JobKey>) {
        let _ = self.tx.send(Request::Want(keys));
    }

    /// Asks the worker to stop and waits for it (it stops between batches).
    pub fn shutdown(&mut self) {
        let _ = self.tx.send(Request::Shutdown);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    models: Vec<Model>,
    set: Arc<ImageSet>,
    settings: Settings,
    cache: HashMap<JobKey, Arc<JobResult>>,
    /// The logits of finished perturbation and PGD jobs, by their key
    /// (at most [`KEPT_LOGITS`] values in all; the first ones are kept).
    logits: HashMap<JobKey, Arc<Vec<f32>>>,
    ctl: Control,
}

/// The worker's side of the channels and the current wishes.
struct Control {
    rx: Receiver<Request>,
    tx: Sender<Event>,
    want: Vec<JobKey>,
    shutdown: bool,
}

impl Control {
    /// Applies pending requests without blocking. Returns whether `key` is still wanted.
    fn poll(&mut self, key: JobKey) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(r) => self.apply(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.shutdown = true;
                    break;
                }
            }
        }
        !self.shutdown && self.want.contains(&key)
    }
    fn apply(&mut self, r: Request) {
        match r {
            Request::Want(w) => self.want = w,
            Request::Shutdown => self.shutdown = true,
        }
    }
    /// Waits for the UI's next request, at most `limit` (none: forever).
    fn wait(&mut self, limit: Option<Duration>) {
        let r = match limit {
            Some(d) => match self.rx.recv_timeout(d) {
                Err(mpsc::RecvTimeoutError::Timeout) => return,
                r => r.map_err(|_| ()),
            },
            None => self.rx.recv().map_err(|_| ()),
        };
        match r {
            Ok(r) => self.apply(r),
            Err(()) => self.shutdown = true,
        }
    }
}

impl Worker {
    fn run(&mut self) {
        while !self.ctl.shutdown {
            let todo = |k: &JobKey| !self.cache.contains_key(k);
            // The most wanted job's sample is about to be decoded (the
            // first images at launch): wait for it rather than start a long
            // job before it.
            if let Some(k) = self.ctl.want.iter().find(|k| todo(k)) {
                if !self.decoded(k) && self.decoded_soon(k) {
                    self.ctl.wait(Some(Duration::from_millis(10)));
                    continue;
                }
            }
            let next = self
                .ctl
                .want
                .iter()
                .copied()
                .find(|k| todo(k) && self.decoded(k));
            let Some(key) = next else {
                // Nothing to do: block until the UI asks for something, or
                // (a sample of a folder still being decoded) a while.
                let waiting = self.ctl.want.iter().any(todo);
                self.ctl.wait(waiting.then_some(Duration::from_millis(100)));
                continue;
            };
            if !self.ctl.poll(key) {
                continue; // the wishes changed; pick again
            }
            let started = Instant::now();
            match self.compute(key) {
                Ok(Some(result)) => {
                    let result = Arc::new(result);
                    self.cache.insert(key, result.clone());
                    let _ = self.ctl.tx.send(Event::Done { key, result });
                    let secs = started.elapsed().as_secs_f64();
                    if !matches!(key, JobKey::Sample { .. } | JobKey::Explain { .. }) && secs > 0.0
                    {
                        let n = self.set.len() as f64;
                        let _ = self.ctl.tx.send(Event::Speed {
                            images_per_sec: n / secs,
                        });
                    }
                }
                Ok(None) => {} // superseded or shutting down
                Err(e) => {
                    self.ctl.want.retain(|k| *k != key);
                    let _ = self.ctl.tx.send(Event::Failed {
                        key,
                        error: e.to_string().replace('\n', " "),
                    });
                }
            }
        }
    }

    /// Whether a job's one sample is there (an image folder decoded in the
    /// background): a sample job waits its turn instead of blocking the
    /// worker. Jobs over the whole set read batch by batch as decoding goes.
    fn decoded(&self, key: &JobKey) -> bool {
        match *key {
            JobKey::Sample { index, .. } | JobKey::Explain { index, .. } => {
                self.set.data.decoded(index + 1)
            }
            _ => true,
        }
    }

    /// Whether a job's sample is among the next images being decoded.
    fn decoded_soon(&self, key: &JobKey) -> bool {
        const SOON: usize = 256;
        match (*key, self.set.data.decoding()) {
            (JobKey::Sample { index, .. } | JobKey::Explain { index, .. }, Some((ready, _))) => {
                index < ready + SOON
            }
            _ => false,
        }
    }

    fn clean(&mut self, model: usize) -> crate::Result<Option<Arc<JobResult>>> {
        let key = JobKey::Clean { model };
        if let Some(r) = self.cache.get(&key) {
            return Ok(Some(r.clone()));
        }
        let r = self.compute(key)?;
        Ok(r.map(|r| {
            let r = Arc::new(r);
            self.cache.insert(key, r.clone());
            let _ = self.ctl.tx.send(Event::Done {
                key,
                result: r.clone(),
            });
            r
        }))
    }

    /// Runs one job; `None` when it was superseded.
    fn compute(&mut self, key: JobKey) -> crate::Result<Option<JobResult>> {
        let batch = self.settings.batch;
        let set = self.set.clone();
        let mut last = Instant::now() - Duration::from_secs(1);
        // Perturbation jobs need the clean logits first.
        let clean = match key {
            JobKey::Perturb { model, .. } => match self.clean(model)? {
                Some(r) => Some(r),
                None => return Ok(None),
            },
            _ => None,
        };
        let tx = self.ctl.tx.clone();
        let ctl = &mut self.ctl;
        let mut obs = |done: usize, total: usize| {
            if last.elapsed() > Duration::from_millis(30) || done == total {
                last = Instant::now();
                let _ = ctl.tx.send(Event::Progress { key, done, total });
            }
            ctl.poll(key) || matches!(key, JobKey::Clean { .. }) && !ctl.shutdown
        };
        let res = match key {
            JobKey::Clean { model } => {
                let m = &self.models[model];
                let k = m.num_classes();
                let mut stream = partial_stream(key, tx.clone(), &mut obs, |lg| {
                    JobResult::Clean(eval::clean_from(&set, lg.to_vec(), k))
                });
                eval::features_with(
                    m,
                    &set,
                    eval::Images::Clean,
                    Tap::Logits,
                    batch,
                    &mut stream,
                )?
                .map(|lg| JobResult::Clean(eval::clean_from(&set, lg, k)))
            }
            JobKey::Perturb { model, kind, level } => {
                let Some(JobResult::Clean(c)) = clean.as_deref() else {
                    unreachable!("clean result computed above")
                };
                let m = &self.models[model];
                let images = eval::Images::Perturbed {
                    kind,
                    level,
                    seed: self.settings.seed,
                };
                let row =
                    |lg: &[f32]| JobResult::Perturb(eval::perturb_row(&set, c, kind, level, lg));
                let mut stream = partial_stream(key, tx.clone(), &mut obs, row);
                let lg = eval::features_with(m, &set, images, Tap::Logits, batch, &mut stream)?;
                lg.map(|lg| {
                    let row = eval::perturb_row(&set, c, kind, level, &lg);
                    keep_logits(&mut self.logits, key, lg);
                    JobResult::Perturb(row)
                })
            }
            JobKey::Pgd { model, eps_index } => {
                let cfg = self
                    .settings
                    .pgd
                    .get(eps_index)
                    .copied()
                    .ok_or_else(|| crate::invalid!("no PGD setting {eps_index}"))?;
                let m = &self.models[model];
                let pb = pgd_batch(m, batch, &cfg);
                let out = eval::pgd_features(m, &set, &cfg, Some(Tap::Logits), pb, &mut obs)?;
                out.map(|(row, lg)| {
                    keep_logits(&mut self.logits, key, lg);
                    JobResult::Pgd(row)
                })
            }
            // k* and the 2-D view of a set read the same latents.
            JobKey::Kstar { model, tap, on, .. } | JobKey::Embed { model, tap, on, .. } => {
                let m = &self.models[model];
                let src = SetSource {
                    model,
                    settings: &self.settings,
                    logits: &self.logits,
                };
                let Some((preds, f)) = set_features(m, &set, src, tap, on, batch, &mut obs)? else {
                    return Ok(None);
                };
                Some(match key {
                    JobKey::Kstar { metric, .. } => {
                        let names = class_names(m, &set);
                        JobResult::Kstar(eval::kstar(
                            &f,
                            &set.labels,
                            Some(&preds),
                            &names,
                            tap,
                            metric,
                            &m.device,
                        )?)
                    }
                    JobKey::Embed { method, .. } => {
                        let d = f.len() / set.len().max(1);
                        JobResult::Embed(Embedding {
                            method,
                            points: embed::embed(method, &f, d, self.settings.seed)?,
                            labels: set.labels.clone(),
                            preds,
                        })
                    }
                    _ => unreachable!("matched k* and embedding keys only"),
                })
            }
            JobKey::Sample { kind, level, index } => Some(JobResult::Sample(sample::sample(
                &set,
                kind,
                level,
                index,
                self.settings.seed,
            )?)),
            JobKey::Explain {
                model,
                method,
                kind,
                level,
                index,
                scored,
            } => {
                let what = sample::Explained {
                    method,
                    kind,
                    level,
                    index,
                    scored,
                };
                let ctl = &mut self.ctl;
                let mut wanted = || ctl.poll(key);
                let m = &self.models[model];
                let seed = self.settings.seed;
                sample::explanation(m, &set, what, seed, &mut wanted)?.map(JobResult::Explain)
            }
        };
        Ok(res)
    }
}

/// Wraps a progress observer so that it also streams partial results (at most
/// every 150 ms, never for the last batch: `Done` follows it).
fn partial_stream<'a>(
    key: JobKey,
    tx: Sender<Event>,
    obs: &'a mut dyn FnMut(usize, usize) -> bool,
    make: impl Fn(&[f32]) -> JobResult + 'a,
) -> impl FnMut(&[f32], usize, usize) -> bool + 'a {
    let mut last: Option<Instant> = None;
    move |so_far, done, total| {
        if done < total && last.is_none_or(|t| t.elapsed() > Duration::from_millis(150)) {
            last = Some(Instant::now());
            let _ = tx.send(Event::Partial {
                key,
                result: Arc::new(make(so_far)),
            });
        }
        obs(done, total)
    }
}

/// Class names: the model's, else the dataset's.
pub fn class_names(m: &Model, set: &ImageSet) -> Vec<String> {
    m.class_names
        .clone()
        .unwrap_or_else(|| set.class_names.clone())
}
