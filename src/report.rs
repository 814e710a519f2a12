//! The headless report of `semcon eval`: its JSON shape (docs/json.md) and
//! the readable table. Built from the numbers [`crate::eval`] computes; the
//! explorer's export has its own view ([`crate::tui::export`]).

use crate::eval::{PerturbRow, PgdRow};
use crate::metrics::kstar::KstarReport;
use serde::Serialize;

/// The JSON report (keys documented in docs/json.md).
#[derive(Serialize, Debug)]
pub struct Report {
    pub samples: usize,
    pub dataset: String,
    /// The split read (`--split`; a dataset with one split reads it for both).
    pub split: crate::data::Split,
    pub device: String,
    pub models: Vec<ModelReport>,
}

/// One model's numbers.
#[derive(Serialize, Debug)]
pub struct ModelReport {
    pub checkpoint: String,
    pub name: String,
    pub arch: String,
    /// torchvision's eval preprocessing asked for, by flags or by this
    /// model's sidecar (image folders apply it; arrays ignore it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<crate::data::preprocess::Preprocess>,
    pub clean_accuracy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift_dataset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift_accuracy: Option<f64>,
    pub perturbations: Vec<PerturbRow>,
    pub pgd: Vec<PgdRow>,
    /// k* of the clean set (at `--layer`, the logits with `--layer all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kstar: Option<KstarReport>,
    /// With `--layer all`: the clean set's k* at every layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kstar_layers: Vec<KstarReport>,
    /// With `--explain`: the numbers of its explanations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanations: Option<crate::explain::scores::ExplainReport>,
}

/// An accuracy in [0,1] as a percentage with two decimals.
pub fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// Human-readable report.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "dataset {} ({} split, {} samples), {}",
        r.dataset,
        match r.split {
            crate::data::Split::Train => "train",
            crate::data::Split::Test => "test",
        },
        r.samples,
        r.device
    );
    for m in &r.models {
        let _ = writeln!(s, "\n== {} ({}, {})", m.name, m.arch, m.checkpoint);
        let _ = write!(s, "clean accuracy {}", pct(m.clean_accuracy));
        if let (Some(d), Some(acc)) = (&m.shift_dataset, m.shift_accuracy) {
            let _ = write!(s, "   shift accuracy {} on {d}", pct(acc));
        }
        let _ = writeln!(s);
        if !m.perturbations.is_empty() {
            let _ = writeln!(
                s,
                "{:<16} {:>5} {:>22} {:>9} {:>11} {:>11} {:>8}",
                "perturbation", "level", "param", "accuracy", "DS mean", "DS median", "discont"
            );
            for p in &m.perturbations {
                let _ = writeln!(
                    s,
                    "{:<16} {:>5} {:>22} {:>9} {:>11.4} {:>11.4} {:>8}",
                    p.name,
                    p.level,
                    p.label,
                    pct(p.accuracy),
                    p.ds_mean,
                    p.ds_median,
                    pct(p.discontinuity_rate)
                );
            }
        }
        for p in &m.pgd {
            let _ = writeln!(
                s,
                "PGD eps {:.4} ({:.1}/255) step {:.4} x{}: adversarial accuracy {}",
                p.eps,
                p.eps * 255.0,
                p.step,
                p.iters,
                pct(p.accuracy)
            );
        }
        if m.kstar_layers.is_empty() {
            if let Some(k) = &m.kstar {
                s.push_str(&k.table());
            }
        }
        for k in &m.kstar_layers {
            s.push_str(&k.table());
        }
        // The transformed and adversarial sets: one line each.
        let transformed: Vec<(String, &KstarReport)> =
            m.perturbations
                .iter()
                .filter_map(|p| {
                    Some((
                        format!("{} L{} ({})", p.name, p.level, p.label),
                        p.kstar.as_ref()?,
                    ))
                })
                .chain(m.pgd.iter().filter_map(|p| {
                    Some((format!("PGD {:.1}/255", p.eps * 255.0), p.kstar.as_ref()?))
                }))
                .collect();
        if !transformed.is_empty() {
            let layer = &transformed[0].1.layer;
            let _ = writeln!(s, "k* of the transformed sets (layer {layer})");
            let _ = writeln!(
                s,
                "{:<36} {:>3} {:>3} {:>3} {:>8} {:>8} {:>8}",
                "set", "A", "B", "C", "mean k*", "skew", "acc"
            );
            let rows = m
                .kstar
                .iter()
                .map(|k| ("clean".to_string(), k))
                .chain(transformed.iter().map(|(n, k)| (n.clone(), *k)));
            let opt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
            for (name, k) in rows {
                let sm = &k.summary;
                let _ = writeln!(
                    s,
                    "{:<36} {:>3} {:>3} {:>3} {:>8} {:>8} {:>8}",
                    name,
                    sm.a.count,
                    sm.b.count,
                    sm.c.count,
                    opt(sm.all.mean),
                    opt(sm.all.skew),
                    opt(sm.all.accuracy)
                );
            }
        }
        if let Some(e) = &m.explanations {
            let _ = write!(
                s,
                "{} of {} images: sensitivity_max mean {:.4} (max {:.4}), deletion AUC {:.4}",
                e.method.title(),
                e.samples,
                e.sensitivity_max_mean,
                e.sensitivity_max_max,
                e.deletion_auc
            );
            if let Some(b) = e.background_share {
                let _ = write!(s, ", background share {}", pct(b));
            }
            let _ = writeln!(s);
            let _ = writeln!(s, "  moved by colour (||E(x) - E(P(x))|| / ||E(x)||):");
            for c in &e.colour_sensitivity {
                let _ = writeln!(s, "  {:<24} {:.4}", c.label, c.mean);
            }
        }
    }
    s
}
