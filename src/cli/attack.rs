//! `semcon attack`: PGD on a dataset or on given arrays; prints clean and
//! adversarial accuracy and writes the adversarial images.

use super::args::{parse_batch, parse_frac, DataArgs, ModelArgs};
use super::common::{check_out, input_with_labels, progress};
use crate::eval;
use crate::metrics::pgd::{self, PgdConfig};
use crate::report::pct;
use crate::session;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AttackArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Float32 NCHW images in [0,1] (.npy) instead of a dataset (needs --labels).
    #[arg(long, conflicts_with = "dataset", requires = "labels")]
    pub input: Option<PathBuf>,
    /// Integer labels (.npy) for --input.
    #[arg(long, requires = "input")]
    pub labels: Option<PathBuf>,
    /// L-infinity radius (pixel values in [0,1]).
    #[arg(long, default_value = "8/255", value_parser = parse_frac)]
    pub eps: f32,
    /// Step size.
    #[arg(long, default_value = "2/255", value_parser = parse_frac)]
    pub step: f32,
    /// Iterations.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Start from uniform noise in the eps ball (seeded by --seed + sample index).
    #[arg(long)]
    pub random_start: bool,
    /// Output .npy with the adversarial images (float32 NCHW).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Images per forward pass (a device out of memory halves it and retries).
    #[arg(long, default_value_t = 250, value_parser = parse_batch)]
    pub batch: usize,
}

pub fn run(a: &AttackArgs) -> Result<()> {
    if let Some(out) = &a.out {
        check_out(out, &["npy"])?;
    }
    let choice = a.model.choice()?;
    let device = choice.device()?;
    let m = choice.load_one(&device)?;
    // Read batch by batch below: a large uint8 set is never expanded whole.
    let set = match (&a.input, &a.labels) {
        (Some(xp), Some(yp)) => a.data.choice()?.subset(input_with_labels(xp, yp)?)?,
        _ => {
            let set = session::load_data(&a.data.choice()?, std::slice::from_ref(&m))?;
            eval::images_for(&m, &set)?
        }
    };
    let y = set.labels.as_slice();
    if let Some((i, l)) = y
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= m.num_classes())
    {
        bail!(
            "label {l} of sample {i} does not fit model {} with {} classes",
            m.name,
            m.num_classes()
        );
    }
    let cfg = PgdConfig {
        eps: a.eps,
        step: a.step,
        iters: a.iters,
        random_start: a.random_start,
        seed: a.data.seed,
    };
    let n = y.len();
    let pb = progress(
        n as u64,
        format!("PGD-{} eps {:.1}/255", a.iters, a.eps * 255.0),
    );
    // per sample: (clean prediction, adversarial prediction); x_adv per batch
    let mut advs = Vec::new();
    let preds = eval::in_batches(
        n,
        a.batch,
        |s, e| {
            let xb = set.batch(s, e, &device)?;
            let yb = Tensor::from_slice(&y[s..e], e - s, &device)?;
            let c = PgdConfig {
                seed: cfg.seed.wrapping_add(s as u64),
                ..cfg
            };
            let out = pgd::pgd(&m, &xb, &yb, &c)?;
            let pc = crate::metrics::accuracy::predictions(&m.logits(&xb)?)?;
            let pa = crate::metrics::accuracy::predictions(&m.logits(&out.x_adv)?)?;
            advs.push(out.x_adv.to_device(&Device::Cpu)?);
            Ok(pc.into_iter().zip(pa).collect())
        },
        |_, done, _| {
            pb.set_position(done as u64);
            true
        },
    )?
    .unwrap_or_default();
    let clean_ok = preds.iter().zip(y).filter(|((p, _), l)| p == *l).count();
    let adv_ok = preds.iter().zip(y).filter(|((_, p), l)| p == *l).count();
    pb.finish_and_clear();
    println!(
        "clean accuracy {} adversarial accuracy {} ({} samples, eps {:.5}, step {:.5}, {} iterations{})",
        pct(clean_ok as f64 / n as f64),
        pct(adv_ok as f64 / n as f64),
        n,
        a.eps,
        a.step,
        a.iters,
        if a.random_start { ", random start" } else { "" }
    );
    if let Some(out) = &a.out {
        let adv = Tensor::cat(&advs, 0)?.to_dtype(DType::F32)?;
        adv.write_npy(out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
