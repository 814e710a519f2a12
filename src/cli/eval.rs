//! `semcon eval`: one report per model (clean and shifted accuracy, every
//! perturbation's accuracy/DS/discontinuity, PGD, k*) over [`crate::eval`],
//! printed as a table or JSON ([`crate::report`]).

use super::args::{parse_batch, parse_frac, DataArgs, Format, ModelArgs};
use super::common::{check_out, progress};
use crate::eval;
use crate::metrics::kstar::Metric;
use crate::metrics::pgd::PgdConfig;
use crate::model::Tap;
use crate::perturb;
use crate::report::{self, ModelReport, Report};
use crate::session;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Perturbations: NAME or NAME:LEVELS (e.g. hue:1,2 or hue:1-3), or a group:
    /// colour (Table 1), probes (channel-shift, center-shuffle, puzzle), all
    /// (colour + probes), kstar (noise, rotate, crop-resize); repeatable,
    /// or joined with +. Default: all; none for no perturbation.
    #[arg(long)]
    pub perturb: Vec<String>,
    /// PGD eps values (comma separated, e.g. 2/255,8/255); none by default.
    #[arg(long, value_delimiter = ',', value_parser = parse_frac)]
    pub pgd: Vec<f32>,
    /// PGD step size.
    #[arg(long, default_value = "2/255", value_parser = parse_frac)]
    pub pgd_step: f32,
    /// PGD iterations.
    #[arg(long, default_value_t = 10)]
    pub pgd_iters: usize,
    /// Start PGD from uniform noise in the eps ball (seeded by --seed + sample index).
    #[arg(long)]
    pub random_start: bool,
    /// Also compute the k* distribution: of the clean set, and of each
    /// perturbed and adversarial set (with accuracies per class and pattern).
    #[arg(long)]
    pub kstar: bool,
    /// Layer for k*: logits, penultimate, a ResNet's layer1..layer4, a
    /// ConvNeXt's or EfficientNet's stage1..N, a ViT's block1..N, or all
    /// (the clean set's k* at every layer all models have, from one forward
    /// pass, in `kstar_layers`; the perturbed and adversarial sets at the
    /// logits).
    #[arg(long, default_value = "logits")]
    pub layer: String,
    /// Distance for k*: euclidean, cityblock, chebyshev, cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// A second dataset for the distribution-shift accuracy (e.g. builtin:fashion-mnist:colour).
    #[arg(long)]
    pub shift_dataset: Option<String>,
    /// table (readable) or json (keys: docs/json.md).
    /// Also the numbers of each model's explanations (saliency, ig or
    /// gradcam) of the first --explain-samples images: Captum's
    /// sensitivity_max, the same ratio under each colour perturbation, the
    /// background share (colour-shift sets) and RISE's deletion AUC.
    #[arg(long, value_enum)]
    pub explain: Option<crate::explain::Method>,
    /// Images whose explanations --explain measures.
    #[arg(long, default_value_t = 16, requires = "explain")]
    pub explain_samples: usize,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Images per forward pass (a device out of memory halves it and retries).
    #[arg(long, default_value_t = 250, value_parser = parse_batch)]
    pub batch: usize,
    /// Write the JSON report here as well (.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    if let Some(out) = &a.out {
        check_out(out, &["json"])?;
    }
    let choice = a.model.choice()?;
    let device = choice.device()?;
    let models = choice.load_all(&device)?;
    let data = a.data.choice()?;
    // Each model with the preprocessing its sidecar asks for.
    let (sets, set_of) = session::load_data_each(&data, &models)?;
    let mut selection = Vec::new();
    let specs = if a.perturb.is_empty() {
        vec!["all".to_string()]
    } else {
        a.perturb.clone()
    };
    for s in &specs {
        if s != "none" {
            selection.extend(perturb::parse_selection(s)?);
        }
    }
    let taps: Vec<Tap> = if a.layer == "all" {
        crate::model::common_taps(&models)
    } else {
        let t: Tap = a.layer.parse()?;
        for m in &models {
            m.check_tap(t)?;
        }
        vec![t]
    };
    let tap = taps[0];
    let metric: Metric = a.metric.parse()?;
    let shift = match &a.shift_dataset {
        Some(d) => Some(data.with_dataset(d).load(models[0].input_size)?),
        None => None,
    };
    if let Some(s) = &shift {
        session::check_labels(s, &models)?;
    }
    let mut reports = Vec::new();
    for (m, &si) in models.iter().zip(&set_of) {
        let (mset, preprocessing) = (eval::images_for(m, &sets[si].0)?, sets[si].1);
        let n = mset.len() as u64;
        let jobs =
            1 + selection.len() + a.pgd.len() + usize::from(a.kstar) + usize::from(shift.is_some());
        let pb = progress(n * jobs as u64, m.name.clone());
        let mut base = 0u64;
        let mut tick = |done: usize, _total: usize| {
            pb.set_position(base + done as u64);
            true
        };
        let clean = eval::clean(m, &mset, a.batch, &mut tick)?.expect("never cancelled");
        base += n;
        let shift_accuracy = match &shift {
            Some(s) => {
                let s = eval::images_for(m, s)?;
                let c = eval::clean(m, &s, a.batch, &mut |d, _| {
                    pb.set_position(base + d as u64);
                    true
                })?
                .expect("never cancelled");
                base += n;
                Some(c.accuracy)
            }
            None => None,
        };
        let names = crate::engine::class_names(m, &mset);
        let kstar_of = |f: &[f32], preds: &[u32], tap: Tap| {
            eval::kstar(f, &mset.labels, Some(preds), &names, tap, metric, &device)
        };
        let mut rows = Vec::new();
        for &(kind, level) in &selection {
            let mut tick = |d: usize, _: usize| {
                pb.set_position(base + d as u64);
                true
            };
            let row = if a.kstar {
                let (mut row, f) = eval::perturbation_features(
                    m,
                    &mset,
                    &clean,
                    kind,
                    level,
                    a.data.seed,
                    tap,
                    a.batch,
                    &mut tick,
                )?
                .expect("never cancelled");
                row.kstar = Some(kstar_of(&f, &row.preds, tap)?);
                row
            } else {
                eval::perturbation(
                    m,
                    &mset,
                    &clean,
                    kind,
                    level,
                    a.data.seed,
                    a.batch,
                    &mut tick,
                )?
                .expect("never cancelled")
            };
            base += n;
            rows.push(row);
        }
        let mut pgd_rows = Vec::new();
        for &eps in &a.pgd {
            let cfg = PgdConfig {
                eps,
                step: a.pgd_step,
                iters: a.pgd_iters,
                random_start: a.random_start,
                seed: a.data.seed,
            };
            let (mut r, f) = eval::pgd_features(
                m,
                &mset,
                &cfg,
                a.kstar.then_some(tap),
                a.batch,
                &mut |d, _| {
                    pb.set_position(base + d as u64);
                    true
                },
            )?
            .expect("never cancelled");
            if a.kstar {
                r.kstar = Some(kstar_of(&f, &r.preds, tap)?);
            }
            base += n;
            pgd_rows.push(r);
        }
        // The clean set's k* at every layer asked for, from one forward
        // pass (the logits are the clean pass's own).
        let mut kstar_layers = Vec::new();
        if a.kstar {
            let others: Vec<Tap> = taps.iter().copied().filter(|&t| t != Tap::Logits).collect();
            let mut feats = eval::features_many(
                m,
                &mset,
                eval::Images::Clean,
                &others,
                a.batch,
                &mut |d, _| {
                    pb.set_position(base + d as u64);
                    true
                },
            )?
            .expect("never cancelled")
            .into_iter();
            for &t in &taps {
                let f = if t == Tap::Logits {
                    clean.logits.clone()
                } else {
                    feats.next().expect("one output per tap")
                };
                kstar_layers.push(kstar_of(&f, &clean.preds, t)?);
            }
        }
        let explanations = match a.explain {
            Some(method) => Some(crate::explain::scores::report(
                m,
                &mset,
                method,
                &crate::explain::Options::default(),
                a.explain_samples,
                a.data.seed,
            )?),
            None => None,
        };
        let kstar = (!kstar_layers.is_empty()).then(|| kstar_layers[0].clone());
        if taps.len() == 1 {
            kstar_layers.clear();
        }
        pb.finish_and_clear();
        reports.push(ModelReport {
            checkpoint: m.path.display().to_string(),
            name: m.name.clone(),
            arch: m.arch_name(),
            preprocessing,
            clean_accuracy: clean.accuracy,
            shift_dataset: shift.as_ref().map(|s| s.name.clone()),
            shift_accuracy,
            perturbations: rows,
            pgd: pgd_rows,
            kstar,
            kstar_layers,
            explanations,
        });
    }
    let report = Report {
        samples: sets[0].0.len(),
        dataset: sets[0].0.name.clone(),
        split: data.split.unwrap_or_default(),
        device: crate::device::describe(&device),
        models: reports,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &a.out {
        std::fs::write(out, &json).with_context(|| format!("cannot write {}", out.display()))?;
    }
    match a.format {
        Format::Json => println!("{json}"),
        Format::Table => print!("{}", report::table(&report)),
    }
    Ok(())
}
