//! `view.json`: the numbers of the current view, per model as the panels
//! show them ([`table`]), with the settings that produced them.

use crate::tui::app::{eps_label, metric_name, App};
use crate::tui::kview;
use crate::tui::panels::table;
use serde_json::{json, Map, Value};

/// The numbers of the current view (only what has been computed; missing
/// values are null).
pub fn view_json(app: &App) -> Value {
    let (kind, level) = app.current();
    let m = &app.meta;
    let mut models = Map::new();
    for r in table::rows(app) {
        // A level still computing is exported as far as it got, marked so.
        let levels: Vec<Value> = (1..)
            .zip(&r.levels)
            .map(|(l, e)| match e.value {
                Some(p) => {
                    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                    if let Value::Object(o) = &mut v {
                        o.insert("samples".into(), json!(p.preds.len()));
                        o.insert("final".into(), json!(e.is_final()));
                    }
                    v
                }
                None => json!({ "level": l, "label": app.label(kind, l) }),
            })
            .collect();
        let pgd: Vec<Value> = m
            .pgd
            .iter()
            .zip(&r.pgd)
            .map(|(s, e)| {
                json!({
                    "eps": s.eps,
                    "eps_label": eps_label(s.eps),
                    "step": s.step,
                    "iters": s.iters,
                    "accuracy": e.value.map(|p| p.accuracy),
                    // PGD streams no partial accuracy: null until final.
                    "samples": e.value.map(|p| p.preds.len()),
                    "final": e.value.is_some(),
                })
            })
            .collect();
        let kstar = app.kstar(r.model).map(|k| {
            let cls = kview::classes(k);
            json!({
                "patterns": kview::groups(k),
                "mean": kview::overall_mean(k),
                "accuracy": kview::overall_accuracy(k),
                "classes": cls,
            })
        });
        let s = r.sample(app.sample, level);
        let sample = json!({
            "prediction_before": s.before,
            "prediction_after": s.after,
            "ds": s.ds,
        });
        models.insert(
            r.name.to_string(),
            json!({
                "clean_accuracy": r.clean.value.map(|c| c.accuracy),
                "clean_samples": r.clean.value.map(|c| c.preds.len()),
                "clean_final": r.clean.final_value().is_some(),
                "levels": levels,
                "pgd": pgd,
                "kstar": kstar,
                "sample": sample,
            }),
        );
    }
    json!({
        "dataset": m.dataset,
        "samples": m.samples,
        "device": m.device,
        "perturbation": {
            "name": kind.name(),
            "level": level,
            "param": kind.param(level, m.side),
            "label": app.label(kind, level),
        },
        "selected_model": m.models.get(app.model),
        "checkpoints": m.checkpoints,
        "seed": m.seed,
        "semcon_version": env!("CARGO_PKG_VERSION"),
        "kstar_patterns": {
            "A": "fractured (skew of k*/n above 0.5)",
            "B": "overlapped (skew between)",
            "C": "clustered (skew below -0.5)",
        },
        "kstar_layer": app.tap.to_string(),
        "kstar_set": app.kstar_set_label(),
        "kstar_distance": metric_name(app.metric),
        "sample": {
            "index": app.sample,
            "label": app.sample_images().map(|s| s.label),
            "class_name": app.sample_images().and_then(|s| m.class_names.get(s.label as usize)),
        },
        "models": models,
    })
}
