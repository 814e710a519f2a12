//! `semcon bench`: images/s of a random-init ResNet (or `--checkpoint`,
//! any family) through the same path
//! `eval`, `attack` and the explorer use (forward, and forward + input
//! gradient), for the Speed tables (docs/speed.md); with `--load DIR`,
//! images/s of reading an image folder (decode + torchvision's eval
//! preprocessing), cold and from the decoded-image cache
//! (`bench/imagefolder.py`).

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};
use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// resnet18, resnet34 or resnet50 (random init, cifar stem).
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// Stem width (64 = torchvision's full width).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Output classes.
    #[arg(long, default_value_t = 100)]
    pub classes: usize,
    /// Input height and width.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Images per timed batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed iterations (their mean is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// CPU threads (sets RAYON_NUM_THREADS and CANDLE_NUM_THREADS); default: candle's choice.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also time forward+backward w.r.t. the input (a PGD step).
    #[arg(long)]
    pub backward: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Time reading this image folder instead: decoding and --resize /
    /// --crop / --interpolation, without the cache, then into and from it.
    #[arg(long)]
    pub load: Option<std::path::PathBuf>,
    /// With --load: the shorter side's size.
    #[arg(long, default_value_t = 256)]
    pub resize: usize,
    /// With --load: the center crop.
    #[arg(long, default_value_t = 224)]
    pub crop: usize,
    /// Time this checkpoint (any family semcon loads) instead of a
    /// random-init ResNet; --size sets the image side (a ViT takes only its
    /// own).
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,
    /// With --load: the resampling.
    #[arg(long, value_enum, default_value_t = crate::data::resample::Filter::Bilinear)]
    pub interpolation: crate::data::resample::Filter,
    /// Also time explaining the batch (each image for its label) with this
    /// method and its defaults (Integrated Gradients: 50 steps and the
    /// convergence delta), as `semcon explain` runs it (bench/explain.sh).
    #[arg(long, value_enum)]
    pub explain: Option<crate::explain::Method>,
}

/// `--load`: images/s of reading a folder, cold (no cache), then the first
/// read that writes the cache, then a read from it.
fn bench_load(a: &BenchArgs, dir: &std::path::Path) -> Result<()> {
    use crate::data::{self, preprocess::Preprocess, LoadOptions};
    use std::time::Instant;
    let pre = Preprocess::new(a.resize, a.crop, a.interpolation).map_err(anyhow::Error::msg)?;
    let spec: data::DatasetSpec = dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("--load: not a UTF-8 path"))?
        .parse()?;
    let run = |cache: bool| -> Result<(usize, f64)> {
        let t = Instant::now();
        let set = data::load(
            &spec,
            &LoadOptions {
                preprocess: Some(pre),
                cache,
                ..Default::default()
            },
        )?;
        // Every image read once as float32, batch by batch, as a command
        // reads them (a mapped cache is only read here).
        for s in (0..set.len()).step_by(256) {
            std::hint::black_box(set.images(s, (s + 256).min(set.len())));
        }
        Ok((set.len(), t.elapsed().as_secs_f64()))
    };
    let (n, cold) = run(false)?;
    let (_, write) = run(true)?;
    let (_, cached) = run(true)?;
    let threads = rayon::current_num_threads();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"images": n, "threads": threads, "cold_s": cold, "cold_images_per_s": n as f64 / cold,
                "first_cached_run_s": write, "cached_s": cached, "cached_images_per_s": n as f64 / cached})
        );
    } else {
        println!(
            "{n} images, {threads} threads: cold {:.0} images/s ({cold:.2} s); writing the cache {write:.2} s; from the cache {:.0} images/s ({cached:.2} s)",
            n as f64 / cold,
            n as f64 / cached
        );
    }
    Ok(())
}

pub fn run(a: &BenchArgs) -> Result<()> {
    use crate::model::resnet::{ResNet, ResNetConfig, Stem};
    use std::time::Instant;
    if a.width == 0 {
        bail!("--width must be at least 1");
    }
    if a.classes == 0 {
        bail!("--classes must be at least 1");
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(t) = a.threads {
        // Both must be set before the first candle op: candle's matmul (gemm) reads
        // RAYON_NUM_THREADS on each call, its barrier pool CANDLE_NUM_THREADS once.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", t.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    if let Some(dir) = &a.load {
        return bench_load(a, dir);
    }
    let threads = candle_core::utils::get_num_threads();
    let device = crate::device::select(&a.device)?;
    let loaded = match &a.checkpoint {
        Some(p) => Some(crate::model::load_named(p, &Default::default(), &device)?),
        None => None,
    };
    let cfg = ResNetConfig::named(&a.arch, Stem::Cifar, a.width, 3, a.classes)?;
    let vm = candle_nn::VarMap::new();
    ResNet::new(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &device),
    )?;
    // Frozen weights (no weight gradients), as for a loaded checkpoint under attack.
    let frozen = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let net = ResNet::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(frozen, DType::F32, &device),
    )?;
    let (c, classes) = match &loaded {
        Some(m) => (m.in_channels(), m.num_classes()),
        None => (cfg.in_channels, a.classes),
    };
    let x = Tensor::rand(0f32, 1f32, (a.batch, c, a.size, a.size), &device)?;
    let y = Tensor::from_vec(
        (0..a.batch as u32).map(|i| i % classes as u32).collect(),
        a.batch,
        &device,
    )?;
    // CPU seconds of this process (Linux; 0 elsewhere): shows the share of the cores it got.
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<f64> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        f.get(11)
            .zip(f.get(12))
            .map_or(0.0, |(u, s)| (u + s) / 100.0)
    };
    // (wall seconds, CPU seconds) per batch.
    let time = |f: &dyn Fn() -> Result<()>| -> Result<(f64, f64)> {
        for _ in 0..a.warmup {
            f()?;
        }
        let (t0, c0, n) = (Instant::now(), cpu(), a.iters.max(1) as f64);
        for _ in 0..a.iters.max(1) {
            f()?;
        }
        Ok((t0.elapsed().as_secs_f64() / n, (cpu() - c0) / n))
    };
    // What `eval`, `attack` and the TUI run: on the CPU the fused network,
    // on a GPU (cudnn builds) the cuDNN network, both built once as for a
    // loaded checkpoint; with SEMCON_NO_FUSED set, candle's graph and autograd.
    let model = match loaded {
        Some(m) => m,
        None => crate::model::Model::from_net(
            net.clone(),
            "bench".into(),
            vec![0.0; c],
            vec![1.0; c],
            &device,
        )?
        .with_frozen_weights(),
    };
    let arch = model.arch_name();
    let path = model.path_name()?;
    let fwd = time(&|| {
        model.logits(&x)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let bwd = if a.backward {
        Some(time(&|| {
            model
                .loss_and_input_grad(&x, &y)?
                .1
                .sum_all()?
                .to_scalar::<f32>()?;
            Ok(())
        })?)
    } else {
        None
    };
    let explained = match a.explain {
        Some(method) => {
            let labels: Vec<u32> = (0..a.batch as u32).map(|i| i % classes as u32).collect();
            let opts = crate::explain::Options::default();
            Some(time(&|| {
                let e = crate::explain::explain(&model, &x, &labels, method, &opts)?;
                e.attr.sum_all()?.to_scalar::<f32>()?;
                Ok(())
            })?)
        }
        None => None,
    };
    let ips = |s: f64| a.batch as f64 / s;
    if a.json {
        let mut j = serde_json::json!({"arch": arch, "width": a.width, "classes": classes, "size": a.size,
            "batch": a.batch, "iters": a.iters, "threads": threads, "device": a.device,
            "path": path,
            "forward_s": fwd.0, "forward_cpu_s": fwd.1, "forward_images_per_s": ips(fwd.0)});
        if let Some(b) = bwd {
            j["fwd_bwd_s"] = b.0.into();
            j["fwd_bwd_cpu_s"] = b.1.into();
            j["fwd_bwd_images_per_s"] = ips(b.0).into();
        }
        if let (Some(m), Some(e)) = (a.explain, explained) {
            j["explain"] = m.name().into();
            j["explain_s"] = e.0.into();
            j["explain_cpu_s"] = e.1.into();
            j["explain_images_per_s"] = ips(e.0).into();
        }
        println!("{j}");
    } else {
        let what = match &a.checkpoint {
            Some(p) => format!("from {}", p.display()),
            None => format!("random init, cifar stem, width {}", a.width),
        };
        println!(
            "{} ({what}), {} classes, {}x{} inputs, batch {}, {} threads ({:?}, {} path)",
            arch, classes, a.size, a.size, a.batch, threads, device, path
        );
        let line = |what: &str, (w, c): (f64, f64)| {
            println!(
                "{what} {:8.1} images/s ({w:.3} s/batch, {c:.3} CPU s/batch)",
                ips(w)
            );
        };
        line("forward:         ", fwd);
        if let Some(b) = bwd {
            line("forward+backward:", b);
        }
        if let (Some(m), Some(e)) = (a.explain, explained) {
            line(&format!("{:<17}", format!("{}:", m.name())), e);
        }
    }
    Ok(())
}
