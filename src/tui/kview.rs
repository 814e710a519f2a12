//! The k* report as the explorer shows it. This is the only place that reads
//! the fields of [`KstarReport`], so that a change of that type touches one
//! file.

use crate::metrics::kstar::{ClassStats, KstarReport, Pattern};

/// One class row.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KClass {
    pub class: u32,
    pub name: String,
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub skew: Option<f64>,
    /// 'A' fractured, 'B' overlapped, 'C' clustered.
    pub pattern: Option<char>,
    /// Accuracy on the class's samples of the set shown.
    pub accuracy: Option<f64>,
    pub counts: Vec<u64>,
    /// The histogram of the correctly classified samples and of the others
    /// (when the predictions are known).
    pub counts_correct: Option<Vec<u64>>,
    pub counts_wrong: Option<Vec<u64>>,
    pub lo: f64,
    pub hi: f64,
}

/// Per-pattern summary: number of classes and the mean statistics.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Group {
    pub pattern: char,
    pub count: usize,
    pub mean: f64,
    pub std: f64,
    pub skew: f64,
    /// Mean class accuracy of the group (`None` without predictions).
    pub accuracy: Option<f64>,
}

/// The classes, most fractured first (by skewness of k*/n, descending;
/// undefined skews last), as the k* paper's Figure 4 orders them.
pub fn classes(r: &KstarReport) -> Vec<KClass> {
    let mut v: Vec<KClass> = r.classes.iter().map(class).collect();
    v.sort_by(|a, b| {
        let key = |c: &KClass| c.skew.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then(a.class.cmp(&b.class))
    });
    v
}

fn class(c: &ClassStats) -> KClass {
    let pattern = c.pattern.map(letter);
    KClass {
        class: c.class,
        name: c.name.clone(),
        n: c.n,
        mean: c.mean,
        std: c.std,
        skew: c.skew,
        pattern,
        accuracy: c.accuracy,
        counts: c.histogram.counts.clone(),
        counts_correct: c.histogram_correct.as_ref().map(|h| h.counts.clone()),
        counts_wrong: c.histogram_wrong.as_ref().map(|h| h.counts.clone()),
        lo: c.histogram.lo,
        hi: c.histogram.hi,
    }
}

/// 'A' fractured, 'B' overlapped, 'C' clustered.
pub fn letter(p: Pattern) -> char {
    match p {
        Pattern::A => 'A',
        Pattern::B => 'B',
        Pattern::C => 'C',
    }
}

/// Counts and mean statistics per pattern A, B, C, as the k* report computed them.
pub fn groups(r: &KstarReport) -> [Group; 3] {
    [Pattern::A, Pattern::B, Pattern::C].map(|p| {
        let g = r.summary.group(p);
        Group {
            pattern: letter(p),
            count: g.count,
            mean: g.mean.unwrap_or(f64::NAN),
            std: g.std.unwrap_or(f64::NAN),
            skew: g.skew.unwrap_or(f64::NAN),
            accuracy: g.accuracy,
        }
    })
}

/// Mean normalised k* over classes.
pub fn overall_mean(r: &KstarReport) -> Option<f64> {
    r.summary.all.mean
}

/// Mean class accuracy over classes.
pub fn overall_accuracy(r: &KstarReport) -> Option<f64> {
    r.summary.all.accuracy
}

/// Unicode block sparkline of histogram counts, `width` characters.
pub fn sparkline(counts: &[u64], width: usize) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if counts.is_empty() || width == 0 {
        return String::new();
    }
    // Re-bin to `width` columns by summing.
    let cols: Vec<u64> = (0..width)
        .map(|i| {
            let a = i * counts.len() / width;
            let b = ((i + 1) * counts.len() / width).max(a + 1);
            counts[a..b.min(counts.len())].iter().sum()
        })
        .collect();
    let max = cols.iter().copied().max().unwrap_or(0);
    cols.iter()
        .map(|&c| {
            if max == 0 {
                BARS[0]
            } else if c == 0 {
                ' '
            } else {
                BARS[((c as f64 / max as f64) * 8.0).ceil().clamp(1.0, 8.0) as usize]
            }
        })
        .collect()
}
