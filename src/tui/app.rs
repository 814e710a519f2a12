//! The explorer's state: what is selected, what the engine has delivered, and
//! which jobs the current view needs. Everything here is pure (no terminal,
//! no engine handle) so that it can be unit-tested; the event loop in
//! [`super::run`] feeds it engine events and key actions and sends
//! [`App::take_request`] to the engine.

use super::image::ColorMode;
use super::keys::Action;
use crate::engine::{JobKey, JobResult};
use crate::metrics::kstar::Metric;
use crate::model::Tap;
use crate::perturb::Kind;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many models are compared side by side.
pub const MAX_MODELS: usize = 4;

/// How long a transient message stays in the status line.
pub const MESSAGE_TTL: Duration = Duration::from_secs(6);

/// The k* distances, in the order `d` cycles through them.
pub const METRICS: [Metric; 4] = [
    Metric::Euclidean,
    Metric::Cityblock,
    Metric::Chebyshev,
    Metric::Cosine,
];

/// Lower-case name of a k* distance.
pub fn metric_name(m: Metric) -> String {
    format!("{m:?}").to_lowercase()
}

/// The panels, in the order Tab visits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Panel {
    Perturbations,
    Accuracy,
    Ds,
    Pgd,
    Kstar,
    Sample,
}

impl Panel {
    pub const ALL: [Panel; 6] = [
        Panel::Perturbations,
        Panel::Accuracy,
        Panel::Ds,
        Panel::Pgd,
        Panel::Kstar,
        Panel::Sample,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Panel::Perturbations => "Perturbations",
            Panel::Accuracy => "Accuracy",
            Panel::Ds => "Distance score (DS)",
            Panel::Pgd => "Adversarial accuracy (PGD)",
            Panel::Kstar => "k* distribution",
            Panel::Sample => "Sample",
        }
    }
}

/// One PGD setting as shown (eps, step, iterations).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PgdSetting {
    pub eps: f64,
    pub step: f64,
    pub iters: usize,
}

/// What does not change during a session.
#[derive(Clone, Debug)]
pub struct Meta {
    /// Short model names, in checkpoint order (1 to [`MAX_MODELS`]).
    pub models: Vec<String>,
    pub dataset: String,
    /// Number of evaluated samples.
    pub samples: usize,
    /// Shorter image side (for perturbation parameters).
    pub side: usize,
    pub class_names: Vec<String>,
    pub pgd: Vec<PgdSetting>,
    /// Device description for the status line.
    pub device: String,
    pub color: ColorMode,
    /// `--demo`: advance the perturbation on this period.
    pub demo: Option<Duration>,
    /// Checkpoint paths, in model order (for exports).
    pub checkpoints: Vec<String>,
    /// `--seed` (sample subset, random perturbations, PGD starts).
    pub seed: u64,
    /// The layers every model has (`l` cycles through them); empty: a
    /// ResNet's.
    pub taps: Vec<Tap>,
    /// The set's pixels while an image folder is decoded in the background
    /// (the status line shows how far it is).
    pub decoding: Option<crate::data::Pixels>,
}

/// The running job's progress as last reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub key: JobKey,
    pub done: usize,
    pub total: usize,
}

/// What a cell of a table shows for a job.
#[derive(Clone, Debug)]
pub enum JobState<'a> {
    Done(&'a JobResult),
    Running {
        done: usize,
        total: usize,
    },
    Queued,
    Failed(&'a str),
    /// Not asked for (yet).
    Idle,
}

/// What the event loop must do after an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Quit,
    Export,
}

#[derive(Clone, Debug)]
pub struct Demo {
    pub period: Duration,
    pub last: Instant,
    pub paused: bool,
}

/// Which samples the k* panel shows the distribution of (`v` cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KstarView {
    /// The evaluated set as is.
    Clean,
    /// The set under the selected perturbation and level (it follows the
    /// perturbation list).
    Current,
    /// The set under PGD at `meta.pgd[i]`.
    Pgd(usize),
}

/// What the lower part of the k* panel shows (`s` cycles): the selected
/// model's classes, or its latents in two dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KstarShow {
    Classes,
    Pca,
    Tsne,
}

/// The whole state of the explorer.
pub struct App {
    pub meta: Meta,
    /// Every (perturbation, level) the list shows, levels 1..=levels().
    pub items: Vec<(Kind, usize)>,
    /// Selected entry of `items`.
    pub item: usize,
    /// Selected model (its histogram, k* classes and sample predictions are shown).
    pub model: usize,
    pub focus: Panel,
    /// Sample shown in the viewer (index into the evaluated set).
    pub sample: usize,
    pub tap: Tap,
    pub metric: Metric,
    /// First k* class row shown.
    pub kstar_scroll: usize,
    /// Whose k* the k* panel shows (`v`).
    pub kstar_on: KstarView,
    /// Classes or a 2-D view below the k* counts (`s`).
    pub kstar_show: KstarShow,
    /// The DS histogram over log-spaced bins (`b`) instead of equal-width ones.
    pub ds_log_bins: bool,
    /// The sample panel's explanation heatmaps (`x` cycles none, saliency,
    /// IG, GradCAM, LIME).
    pub explain: Option<crate::explain::Method>,
    /// Finished results, filled only from engine events.
    pub results: HashMap<JobKey, Arc<JobResult>>,
    /// Results over the samples done so far, for jobs still running.
    pub partials: HashMap<JobKey, Arc<JobResult>>,
    pub progress: Option<Progress>,
    pub failures: HashMap<JobKey, String>,
    /// Throughput of the last finished model job.
    pub speed: Option<f64>,
    pub help: bool,
    pub message: Option<(String, Instant)>,
    /// Images decoded when the status line was last drawn.
    pub decoded_shown: usize,
    pub demo: Option<Demo>,
    pub quit: bool,
    pub engine_stopped: bool,
    /// The job list last sent to the engine.
    pub requested: Vec<JobKey>,
    /// The sample panel's pictures through the terminal's graphics
    /// protocol, once the terminal said it has one (else half blocks).
    pub graphics: Option<crate::tui::graphics::Graphics>,
    /// How pictures are drawn, and why (the help screen says it).
    pub pictures: String,
}

impl App {
    pub fn new(meta: Meta) -> App {
        let items = Kind::ALL
            .iter()
            .flat_map(|&k| (1..=k.levels()).map(move |l| (k, l)))
            .collect();
        let demo = meta.demo.map(|period| Demo {
            period,
            last: Instant::now(),
            paused: false,
        });
        App {
            meta,
            items,
            item: 0,
            model: 0,
            focus: Panel::Perturbations,
            sample: 0,
            tap: Tap::Logits,
            metric: Metric::Euclidean,
            kstar_scroll: 0,
            kstar_on: KstarView::Clean,
            kstar_show: KstarShow::Classes,
            ds_log_bins: false,
            explain: None,
            results: HashMap::new(),
            partials: HashMap::new(),
            progress: None,
            failures: HashMap::new(),
            speed: None,
            help: false,
            message: None,
            decoded_shown: 0,
            demo,
            quit: false,
            engine_stopped: false,
            requested: Vec::new(),
            graphics: None,
            pictures: "half blocks".into(),
        }
    }

    pub fn n_models(&self) -> usize {
        self.meta.models.len()
    }
    pub fn compare(&self) -> bool {
        self.n_models() > 1
    }
    /// The selected perturbation and level.
    pub fn current(&self) -> (Kind, usize) {
        self.items[self.item]
    }
    pub fn kind(&self) -> Kind {
        self.current().0
    }
    pub fn level(&self) -> usize {
        self.current().1
    }
    /// "hue 0.2" for a perturbation level.
    pub fn label(&self, kind: Kind, level: usize) -> String {
        kind.param_label(level, self.meta.side)
    }
    /// The parameter alone ("0.2", "+16/255", "4px"): the label's last word.
    pub fn short_label(&self, kind: Kind, level: usize) -> String {
        let l = self.label(kind, level);
        l.rsplit(' ').next().unwrap_or(&l).to_string()
    }

    // ---- actions ----

    /// Applies an action. Returns what the event loop must do, if anything.
    pub fn update(&mut self, a: Action) -> Option<Command> {
        if self.help {
            match a {
                Action::Quit => return Some(Command::Quit),
                _ => {
                    // Any other key (Esc and ? included) closes the help.
                    self.help = false;
                    return None;
                }
            }
        }
        match a {
            Action::Quit => return Some(Command::Quit),
            Action::Back => return Some(Command::Quit),
            Action::Help => self.help = true,
            Action::Export => return Some(Command::Export),
            Action::NextPanel => self.focus = cycle(&Panel::ALL, self.focus, 1),
            Action::PrevPanel => self.focus = cycle(&Panel::ALL, self.focus, -1),
            Action::NextModel => self.set_model(self.model as isize + 1),
            Action::PrevModel => self.set_model(self.model as isize - 1),
            Action::NextSample => self.step_sample(1),
            Action::PrevSample => self.step_sample(-1),
            Action::NextLayer => self.step_tap(1),
            Action::PrevLayer => self.step_tap(-1),
            Action::NextMetric => self.metric = cycle(&METRICS, self.metric, 1),
            Action::PrevMetric => self.metric = cycle(&METRICS, self.metric, -1),
            Action::Level(l) => self.set_level(l),
            Action::ToggleLogBins => self.ds_log_bins = !self.ds_log_bins,
            Action::CycleExplain => {
                use crate::explain::Method;
                self.explain = match self.explain {
                    None => Some(Method::Saliency),
                    Some(Method::Saliency) => Some(Method::Ig),
                    Some(Method::Ig) => Some(Method::Gradcam),
                    Some(Method::Gradcam) => Some(Method::Lime),
                    Some(Method::Lime) => None,
                }
            }
            Action::CycleKstarShow => {
                self.kstar_show = match self.kstar_show {
                    KstarShow::Classes => KstarShow::Pca,
                    KstarShow::Pca => KstarShow::Tsne,
                    KstarShow::Tsne => KstarShow::Classes,
                }
            }
            Action::CycleKstarSet => {
                self.kstar_on = match self.kstar_on {
                    KstarView::Clean => KstarView::Current,
                    KstarView::Current if !self.meta.pgd.is_empty() => KstarView::Pgd(0),
                    KstarView::Pgd(i) if i + 1 < self.meta.pgd.len() => KstarView::Pgd(i + 1),
                    _ => KstarView::Clean,
                };
                self.kstar_scroll = 0;
            }
            Action::ToggleDemo => match &mut self.demo {
                Some(d) => {
                    d.paused = !d.paused;
                    d.last = Instant::now();
                }
                None => {
                    self.demo = Some(Demo {
                        period: Duration::from_secs(4),
                        last: Instant::now(),
                        paused: false,
                    })
                }
            },
            Action::Up => self.vertical(-1),
            Action::Down => self.vertical(1),
            Action::Jump(to) => self.jump(to),
            Action::Left => self.horizontal(-1),
            Action::Right => self.horizontal(1),
        }
        None
    }

    fn vertical(&mut self, d: isize) {
        match self.focus {
            Panel::Perturbations => self.step_item(d),
            Panel::Accuracy | Panel::Ds | Panel::Pgd => self.set_model(self.model as isize + d),
            Panel::Kstar => {
                let n = self.kstar(self.model).map(|r| r.classes.len()).unwrap_or(0);
                self.kstar_scroll =
                    (self.kstar_scroll as isize + d).clamp(0, n.saturating_sub(1) as isize) as usize
            }
            Panel::Sample => self.step_sample(d),
        }
    }

    /// Home/End/PgUp/PgDn in the focused panel's list (no wrapping).
    fn jump(&mut self, to: crate::tui::keys::Jump) {
        use crate::tui::keys::Jump;
        let (cur, n) = match self.focus {
            Panel::Perturbations => (self.item, self.items.len()),
            Panel::Accuracy | Panel::Ds | Panel::Pgd => (self.model, self.n_models()),
            Panel::Kstar => (
                self.kstar_scroll,
                self.kstar(self.model).map_or(0, |r| r.classes.len()),
            ),
            Panel::Sample => (self.sample, self.meta.samples),
        };
        let last = n.saturating_sub(1);
        let target = match to {
            Jump::First => 0,
            Jump::Last => last,
            Jump::PageUp => cur.saturating_sub(10),
            Jump::PageDown => (cur + 10).min(last),
        };
        self.vertical(target as isize - cur as isize);
    }

    fn horizontal(&mut self, d: isize) {
        match self.focus {
            Panel::Kstar => self.step_tap(d),
            _ => self.set_level((self.level() as isize + d).max(1) as usize),
        }
    }

    /// Moves through the perturbation list (wrapping).
    pub fn step_item(&mut self, d: isize) {
        let n = self.items.len() as isize;
        self.item = (self.item as isize + d).rem_euclid(n) as usize;
    }

    /// Selects `level` of the current perturbation (clamped to 1..=levels).
    pub fn set_level(&mut self, level: usize) {
        let kind = self.kind();
        let level = level.clamp(1, kind.levels());
        if let Some(i) = self.items.iter().position(|&it| it == (kind, level)) {
            self.item = i;
        }
    }

    fn set_model(&mut self, m: isize) {
        let n = self.n_models() as isize;
        self.model = m.rem_euclid(n.max(1)) as usize;
    }

    fn step_sample(&mut self, d: isize) {
        let n = self.meta.samples.max(1) as isize;
        self.sample = (self.sample as isize + d).rem_euclid(n) as usize;
    }

    fn step_tap(&mut self, d: isize) {
        let taps = if self.meta.taps.is_empty() {
            Tap::ALL.to_vec()
        } else {
            self.meta.taps.clone()
        };
        self.tap = cycle(&taps, self.tap, d);
        self.kstar_scroll = 0;
    }

    pub fn set_message(&mut self, text: impl Into<String>, now: Instant) {
        self.message = Some((text.into(), now));
    }

    /// Time passes: the demo advances, messages expire. Returns whether to redraw.
    pub fn tick(&mut self, now: Instant) -> bool {
        let mut changed = false;
        if let Some((_, at)) = &self.message {
            if now.saturating_duration_since(*at) >= MESSAGE_TTL {
                self.message = None;
                changed = true;
            }
        }
        // The status line's decoding count (an image folder read in the background).
        if let Some((done, _)) = self.meta.decoding.as_ref().and_then(|p| p.decoding()) {
            if done != self.decoded_shown {
                self.decoded_shown = done;
                changed = true;
            }
        }
        let ready = self.view_ready();
        if let Some(d) = &mut self.demo {
            let waited = now.saturating_duration_since(d.last);
            // Advance once the numbers are in (or after a long wait on a slow machine).
            if !d.paused && waited >= d.period && (ready || waited >= d.period * 4) {
                d.last = now;
                self.step_item(1);
                changed = true;
            }
        }
        changed
    }
}

fn cycle<T: Copy + PartialEq>(all: &[T], cur: T, d: isize) -> T {
    let n = all.len() as isize;
    let i = all.iter().position(|x| *x == cur).unwrap_or(0) as isize;
    all[(i + d).rem_euclid(n) as usize]
}

/// "8/255" for multiples of 1/255, else the decimal value.
pub fn eps_label(eps: f64) -> String {
    let n = eps * 255.0;
    if (n - n.round()).abs() < 1e-3 && n.round() > 0.0 {
        format!("{}/255", n.round() as i64)
    } else {
        format!("{eps:.4}")
    }
}
