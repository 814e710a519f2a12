//! The k* report as the explorer shows it. This is the only place that reads
//! the fields of [`KstarReport`], so that a change of that type touches one
//! file.

use crate::metrics::kstar::{ClassStats, KstarReport};

/// Skewness thresholds of the pattern letters (SPEC.md defaults), used when a
/// report carries no pattern of its own.
pub const SKEW_FRACTURED: f64 = 0.5;
pub const SKEW_CLUSTERED: f64 = -0.5;

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
    pub counts: Vec<u64>,
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
}

pub fn classes(r: &KstarReport) -> Vec<KClass> {
    r.classes.iter().map(class).collect()
}

fn class(c: &ClassStats) -> KClass {
    let pattern = c
        .pattern
        .as_ref()
        .and_then(|p| letter(&format!("{p:?}")))
        .or_else(|| {
            c.skew.map(|s| {
                if s > SKEW_FRACTURED {
                    'A'
                } else if s < SKEW_CLUSTERED {
                    'C'
                } else {
                    'B'
                }
            })
        });
    KClass {
        class: c.class,
        name: c.name.clone(),
        n: c.n,
        mean: c.mean,
        std: c.std,
        skew: c.skew,
        pattern,
        counts: c.histogram.counts.clone(),
        lo: c.histogram.lo,
        hi: c.histogram.hi,
    }
}

/// The pattern letter of a pattern value's debug form ("A", "\"B\"",
/// "Fractured", "Some(Clustered)", ...).
pub fn letter(s: &str) -> Option<char> {
    let t = s.to_ascii_lowercase();
    if t.contains("fractur") {
        return Some('A');
    }
    if t.contains("overlap") {
        return Some('B');
    }
    if t.contains("cluster") {
        return Some('C');
    }
    let inner: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    match inner.as_str() {
        "A" | "a" => Some('A'),
        "B" | "b" => Some('B'),
        "C" | "c" => Some('C'),
        _ => None,
    }
}

/// Counts and mean statistics per pattern A, B, C.
pub fn groups(classes: &[KClass]) -> [Group; 3] {
    let mut out = [
        Group {
            pattern: 'A',
            ..Default::default()
        },
        Group {
            pattern: 'B',
            ..Default::default()
        },
        Group {
            pattern: 'C',
            ..Default::default()
        },
    ];
    for g in out.iter_mut() {
        let members: Vec<&KClass> = classes
            .iter()
            .filter(|c| c.pattern == Some(g.pattern))
            .collect();
        g.count = members.len();
        if !members.is_empty() {
            let n = members.len() as f64;
            g.mean = members.iter().map(|c| c.mean).sum::<f64>() / n;
            g.std = members.iter().map(|c| c.std).sum::<f64>() / n;
            g.skew = members.iter().filter_map(|c| c.skew).sum::<f64>() / n;
        }
    }
    out
}

/// Mean normalised k* over classes.
pub fn overall_mean(classes: &[KClass]) -> Option<f64> {
    if classes.is_empty() {
        None
    } else {
        Some(classes.iter().map(|c| c.mean).sum::<f64>() / classes.len() as f64)
    }
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
