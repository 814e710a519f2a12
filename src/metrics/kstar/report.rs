//! Per-class statistics of the normalised k* values, pattern classification,
//! the serialisable report, and reading features for the CLI.

use super::types::Metric;
use crate::error::Result;
use crate::metrics::Histogram;
use statrs::statistics::Statistics;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Bins of the per-class histogram of normalised k* over [0, 1].
pub const HISTOGRAM_BINS: usize = 20;

/// Distribution pattern of a class (paper §III).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Pattern {
    /// Fractured: skew above the upper threshold.
    A,
    /// Overlapped: skew between the thresholds.
    B,
    /// Clustered: skew below the lower threshold.
    C,
}

impl Pattern {
    pub const ALL: [Pattern; 3] = [Pattern::A, Pattern::B, Pattern::C];
    pub fn letter(self) -> &'static str {
        match self {
            Pattern::A => "A",
            Pattern::B => "B",
            Pattern::C => "C",
        }
    }
    pub fn description(self) -> &'static str {
        match self {
            Pattern::A => "fractured",
            Pattern::B => "overlapped",
            Pattern::C => "clustered",
        }
    }
}

/// Skew thresholds of the patterns: A if `skew > fractured`, C if `skew <
/// clustered`, else B.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    pub fractured: f64,
    pub clustered: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            fractured: 0.5,
            clustered: -0.5,
        }
    }
}

impl Thresholds {
    /// `None` when the skew is undefined.
    pub fn classify(&self, skew: Option<f64>) -> Option<Pattern> {
        let s = skew?;
        Some(if s > self.fractured {
            Pattern::A
        } else if s < self.clustered {
            Pattern::C
        } else {
            Pattern::B
        })
    }
}

/// Mean, population standard deviation and skewness of one class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub mean: f64,
    pub std: f64,
    /// Biased Fisher-Pearson g1 = m3 / m2^1.5 (`scipy.stats.skew`). `None`
    /// for fewer than two values or zero variance (scipy's test: `m2 <=
    /// (eps * mean)^2`), where scipy returns NaN.
    pub skew: Option<f64>,
}

/// [`Moments`] of a non-empty slice (mean and std by statrs; statrs 0.18 has
/// no sample skewness, so g1 is computed here from the central moments).
pub fn class_moments(values: &[f64]) -> Moments {
    let mean = values.iter().mean();
    let std = if values.is_empty() {
        f64::NAN
    } else {
        values.iter().population_std_dev()
    };
    let n = values.len() as f64;
    let (mut m2, mut m3) = (0.0, 0.0);
    for v in values {
        let d = v - mean;
        m2 += d * d;
        m3 += d * d * d;
    }
    m2 /= n;
    m3 /= n;
    let zero = m2 <= (f64::EPSILON * mean).powi(2);
    let skew = if values.len() < 2 || zero || !m2.is_finite() {
        None
    } else {
        Some(m3 / m2.powf(1.5))
    };
    Moments { mean, std, skew }
}

/// Statistics of one class.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassStats {
    pub class: u32,
    pub name: String,
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub skew: Option<f64>,
    pub pattern: Option<Pattern>,
    /// Share of the class's samples the model classifies correctly, in the
    /// set k* was computed on (`None` when predictions are not known, e.g.
    /// for features without logits).
    pub accuracy: Option<f64>,
    /// Normalised k* over [0, 1], [`HISTOGRAM_BINS`] bins.
    pub histogram: Histogram,
    /// The same histogram over the correctly classified samples only, and
    /// over the others (with predictions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram_correct: Option<Histogram>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram_wrong: Option<Histogram>,
}

/// Means of the class statistics over a group of classes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GroupStats {
    pub count: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// Over the classes of the group whose skew is defined.
    pub skew: Option<f64>,
    /// Mean of the classes' accuracies (each class counts once, as the
    /// paper's "Acc" columns); `None` without predictions.
    pub accuracy: Option<f64>,
}

impl GroupStats {
    fn of<'a>(classes: impl Iterator<Item = &'a ClassStats>) -> Self {
        let classes: Vec<&ClassStats> = classes.collect();
        let avg = |v: Vec<f64>| {
            if v.is_empty() {
                None
            } else {
                Some(crate::metrics::mean(&v))
            }
        };
        GroupStats {
            count: classes.len(),
            mean: avg(classes.iter().map(|c| c.mean).collect()),
            std: avg(classes.iter().map(|c| c.std).collect()),
            skew: avg(classes.iter().filter_map(|c| c.skew).collect()),
            accuracy: avg(classes.iter().filter_map(|c| c.accuracy).collect()),
        }
    }
}

/// Per-pattern and overall means. Classes without a pattern (undefined
/// skew) count only in `all`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    #[serde(rename = "A")]
    pub a: GroupStats,
    #[serde(rename = "B")]
    pub b: GroupStats,
    #[serde(rename = "C")]
    pub c: GroupStats,
    pub all: GroupStats,
}

impl Summary {
    /// The summary of classes whose patterns are set.
    pub fn of(classes: &[ClassStats]) -> Summary {
        let group = |p: Pattern| GroupStats::of(classes.iter().filter(|c| c.pattern == Some(p)));
        Summary {
            a: group(Pattern::A),
            b: group(Pattern::B),
            c: group(Pattern::C),
            all: GroupStats::of(classes.iter()),
        }
    }

    pub fn group(&self, p: Pattern) -> &GroupStats {
        match p {
            Pattern::A => &self.a,
            Pattern::B => &self.b,
            Pattern::C => &self.c,
        }
    }
}

/// The k* analysis of one latent space.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KstarReport {
    /// Filled by the caller (e.g. "logits").
    pub layer: String,
    pub metric: Metric,
    /// Classes present in the labels, ascending.
    pub classes: Vec<ClassStats>,
    pub summary: Summary,
}

/// `k*_i / n_{y_i}` for every sample.
pub fn normalized(kstar: &[u32], labels: &[u32]) -> Vec<f64> {
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for &y in labels {
        *sizes.entry(y).or_default() += 1;
    }
    kstar
        .iter()
        .zip(labels)
        .map(|(&k, y)| k as f64 / sizes[y] as f64)
        .collect()
}

/// The report from raw k* integers.
pub fn summarize(
    kstar: &[u32],
    labels: &[u32],
    class_names: &[String],
    metric: Metric,
    thresholds: Thresholds,
) -> Result<KstarReport> {
    summarize_with(kstar, labels, None, class_names, metric, thresholds)
}

/// [`summarize`], with each sample's correctness (`correct[i]`: the model
/// predicts `labels[i]`) for the accuracies and the split histograms.
pub fn summarize_with(
    kstar: &[u32],
    labels: &[u32],
    correct: Option<&[bool]>,
    class_names: &[String],
    metric: Metric,
    thresholds: Thresholds,
) -> Result<KstarReport> {
    if kstar.len() != labels.len() {
        return Err(crate::invalid!(
            "{} k* values but {} labels",
            kstar.len(),
            labels.len()
        ));
    }
    if let Some(c) = correct {
        if c.len() != labels.len() {
            return Err(crate::invalid!(
                "{} predictions but {} labels",
                c.len(),
                labels.len()
            ));
        }
    }
    let ordered = thresholds.clustered <= thresholds.fractured;
    if !ordered {
        return Err(crate::invalid!(
            "invalid pattern thresholds: clustered-below ({}) must not exceed fractured-above ({})",
            thresholds.clustered,
            thresholds.fractured
        ));
    }
    let norm = normalized(kstar, labels);
    // Per class: the normalised values, and which of them are correct.
    let mut by_class: BTreeMap<u32, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
    for (i, (&y, &v)) in labels.iter().zip(&norm).enumerate() {
        let e = by_class.entry(y).or_default();
        e.0.push(v);
        e.1.push(correct.is_some_and(|c| c[i]));
    }
    let hist = |v: &[f64], ok: &[bool], want: bool| {
        let vals = v
            .iter()
            .zip(ok)
            .filter(|(_, &o)| o == want)
            .map(|(&x, _)| x);
        Histogram::new(vals, HISTOGRAM_BINS, 0.0, 1.0)
    };
    let classes: Vec<ClassStats> = by_class
        .into_iter()
        .map(|(c, (v, ok))| {
            let m = class_moments(&v);
            let known = correct.is_some();
            ClassStats {
                class: c,
                name: class_names
                    .get(c as usize)
                    .cloned()
                    .unwrap_or_else(|| c.to_string()),
                n: v.len(),
                mean: m.mean,
                std: m.std,
                skew: m.skew,
                pattern: thresholds.classify(m.skew),
                accuracy: known.then(|| ok.iter().filter(|&&o| o).count() as f64 / v.len() as f64),
                histogram: Histogram::new(v.iter().copied(), HISTOGRAM_BINS, 0.0, 1.0),
                histogram_correct: known.then(|| hist(&v, &ok, true)),
                histogram_wrong: known.then(|| hist(&v, &ok, false)),
            }
        })
        .collect();
    let summary = Summary::of(&classes);
    Ok(KstarReport {
        layer: String::new(),
        metric,
        classes,
        summary,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

impl KstarReport {
    /// Plain-text table: one line per class, then the summary.
    pub fn table(&self) -> String {
        let w = self
            .classes
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        let mut s = String::new();
        let layer = if self.layer.is_empty() {
            "-"
        } else {
            &self.layer
        };
        let _ = writeln!(s, "k* distribution  layer {layer}  metric {}", self.metric);
        let _ = writeln!(
            s,
            "{:>6}  {:<w$}  {:>7}  {:>7}  {:>7}  {:>8}  {:>7}  pattern",
            "class", "name", "n", "mean", "std", "skew", "acc"
        );
        for c in &self.classes {
            let _ = writeln!(
                s,
                "{:>6}  {:<w$}  {:>7}  {:>7.4}  {:>7.4}  {:>8}  {:>7}  {}",
                c.class,
                c.name,
                c.n,
                c.mean,
                c.std,
                opt(c.skew),
                opt(c.accuracy),
                c.pattern.map_or("-", Pattern::letter)
            );
        }
        let _ = writeln!(s, "summary");
        let _ = writeln!(
            s,
            "{:<16}  {:>5}  {:>7}  {:>7}  {:>8}  {:>7}",
            "pattern", "count", "mean", "std", "skew", "acc"
        );
        let rows = Pattern::ALL
            .iter()
            .map(|&p| {
                (
                    format!("{} {}", p.letter(), p.description()),
                    self.summary.group(p),
                )
            })
            .chain(std::iter::once(("all".to_string(), &self.summary.all)));
        for (label, g) in rows {
            let _ = writeln!(
                s,
                "{:<16}  {:>5}  {:>7}  {:>7}  {:>8}  {:>7}",
                label,
                g.count,
                opt(g.mean),
                opt(g.std),
                opt(g.skew),
                opt(g.accuracy)
            );
        }
        s
    }
}
