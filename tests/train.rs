//! Training: each variant lowers its loss, the continuity term behaves, saved
//! checkpoints reload exactly and load in PyTorch with the same logits
//! (tests/fixtures/make_train.py).

mod common;
use common::max_abs_diff;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use semcon::data::{self, ImageSet, LoadOptions};
use semcon::metrics::pgd::PgdConfig;
use semcon::model::{ResNetConfig, Stem};
use semcon::train::{TrainConfig, Trainer, Variant};

fn tiny_set(n: usize) -> ImageSet {
    let spec = "builtin:fashion-mnist:colour-red".parse().unwrap();
    let set = data::load(&spec, &LoadOptions::default()).unwrap();
    set.select(&(0..n).collect::<Vec<_>>())
}

fn trainer(set: &ImageSet, seed: u64) -> Trainer {
    let cfg = ResNetConfig::named("resnet18", Stem::Cifar, 4, 3, 10).unwrap();
    let (m, s) = semcon::train::channel_stats(set);
    Trainer::new(cfg, m, s, seed, &Device::Cpu).unwrap()
}

fn config(variant: Variant) -> TrainConfig {
    TrainConfig {
        variant,
        alpha: 1.0,
        epochs: 1,
        batch: 16,
        optim: semcon::train::optim::OptimConfig::adam(3e-3),
        seed: 1,
        pgd: PgdConfig {
            eps: 8.0 / 255.0,
            step: 2.0 / 255.0,
            iters: 2,
            random_start: false,
            seed: 0,
        },
    }
}

/// The variant's loss on a fixed batch with a fixed perturbation seed.
fn fixed_loss(tr: &Trainer, x: &Tensor, y: &Tensor, cfg: &TrainConfig) -> f32 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    tr.loss(x, y, cfg, &mut rng)
        .unwrap()
        .0
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn every_variant_lowers_its_loss() {
    let set = tiny_set(32);
    let x = set.batch(0, 32, &Device::Cpu).unwrap();
    let y = set.batch_labels(0, 32, &Device::Cpu).unwrap();
    for variant in [
        Variant::Standard,
        Variant::Continuity,
        Variant::Adv,
        Variant::AdvContinuity,
    ] {
        let mut tr = trainer(&set, 3);
        let mut cfg = config(variant);
        cfg.batch = 32;
        cfg.epochs = 6;
        let before = fixed_loss(&tr, &x, &y, &cfg);
        semcon::train::train(&mut tr, &set, &cfg, &mut |_, _, _, _, _| {}, &mut |_, _| {
            Ok(())
        })
        .unwrap();
        let after = fixed_loss(&tr, &x, &y, &cfg);
        assert!(
            after < before,
            "{variant:?}: loss {before} -> {after} did not decrease"
        );
    }
}

#[test]
fn continuity_term_zero_for_identity_positive_otherwise() {
    let set = tiny_set(8);
    let tr = trainer(&set, 5);
    let x = set.batch(0, 8, &Device::Cpu).unwrap();
    let same = tr
        .continuity_term(&x, &x)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(same, 0.0);
    let shape = (8, 3, 28, 28);
    let data: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let bright =
        semcon::perturb::apply(semcon::perturb::Kind::Brightness, 2, &data, shape, 0).unwrap();
    let xb = Tensor::from_vec(bright, shape, &Device::Cpu).unwrap();
    let diff = tr
        .continuity_term(&x, &xb)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        diff > 0.0,
        "continuity term {diff} should be positive for a real perturbation"
    );
}

#[test]
fn initialisation_is_seeded() {
    let set = tiny_set(4);
    let x = set.batch(0, 4, &Device::Cpu).unwrap();
    let a = trainer(&set, 7).logits(&x, false).unwrap();
    let b = trainer(&set, 7).logits(&x, false).unwrap();
    let c = trainer(&set, 8).logits(&x, false).unwrap();
    let d = |p: &Tensor, q: &Tensor| max_abs_diff(p, q);
    assert_eq!(d(&a, &b), 0.0);
    assert!(d(&a, &c) > 0.0);
}

#[test]
fn saved_checkpoint_reloads_to_identical_logits() {
    let set = tiny_set(32);
    let mut tr = trainer(&set, 11);
    let cfg = config(Variant::Standard);
    semcon::train::train(&mut tr, &set, &cfg, &mut |_, _, _, _, _| {}, &mut |_, _| {
        Ok(())
    })
    .unwrap();
    let dir = std::env::temp_dir().join(format!("semcon-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tiny.safetensors");
    let sidecar = semcon::model::checkpoint::Sidecar {
        mean: Some(tr.mean.clone()),
        std: Some(tr.std.clone()),
        ..Default::default()
    };
    tr.save(&out, &sidecar).unwrap();
    assert!(!dir.join("tiny.safetensors.tmp").exists());
    let m = semcon::model::load(&out, &Default::default(), &Device::Cpu).unwrap();
    let x = set.batch(0, 8, &Device::Cpu).unwrap();
    // the same inference path on both sides (the CPU's fused network), so
    // only the weights can make a difference
    let a = tr.model(out.clone()).unwrap().logits(&x).unwrap();
    let b = m.logits(&x).unwrap();
    assert!(max_abs_diff(&a, &tr.logits(&x, false).unwrap()) < 1e-5);
    let d = max_abs_diff(&a, &b);
    assert_eq!(d, 0.0, "reloaded logits differ by {d}");
    // torchvision's strict load needs num_batches_tracked
    let raw = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert_eq!(raw["bn1.num_batches_tracked"].dtype(), DType::I64);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pytorch_loads_semcon_checkpoint_with_same_logits() {
    let dir = format!("{}/tests/fixtures/train", env!("CARGO_MANIFEST_DIR"));
    let m = semcon::model::load(
        format!("{dir}/tiny.safetensors").as_ref(),
        &Default::default(),
        &Device::Cpu,
    )
    .unwrap();
    let x = Tensor::read_npy(format!("{dir}/tiny_input.npy")).unwrap();
    let want = Tensor::read_npy(format!("{dir}/tiny_logits_torch.npy")).unwrap();
    let got = m.logits(&x).unwrap();
    let d = max_abs_diff(&got, &want);
    let scale = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .max(1.0);
    assert!(d <= 1e-4 * scale, "semcon vs PyTorch logits differ by {d}");
}

#[test]
fn resume_rejects_other_architecture() {
    let set = tiny_set(4);
    let mut tr = trainer(&set, 1);
    let other = format!(
        "{}/tests/fixtures/models/resnet50.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let err = tr.resume(other.as_ref()).unwrap_err().to_string();
    assert!(
        err.contains("cannot resume") && err.contains("resnet50"),
        "{err}"
    );
}

#[test]
fn empty_dataset_is_an_error() {
    let set = tiny_set(4).select(&[]);
    let mut tr = trainer(&tiny_set(4), 1);
    let err = semcon::train::train(
        &mut tr,
        &set,
        &config(Variant::Standard),
        &mut |_, _, _, _, _| {},
        &mut |_, _| Ok(()),
    )
    .expect_err("empty set must fail")
    .to_string();
    assert!(err.contains("empty"), "{err}");
}

/// The four variants' loss, CE, DS and parameter gradients on a fixed batch
/// against PyTorch (tests/fixtures/make_train_loss.py): the tiny fixture
/// checkpoint in train mode, a fixed P(x) and PyTorch's PGD examples.
#[test]
fn variant_losses_and_gradients_match_pytorch() {
    let dir = common::fixture("train");
    let f: std::collections::HashMap<String, Tensor> = Tensor::read_npz(dir.join("loss.npz"))
        .unwrap()
        .into_iter()
        .collect();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tiny.json")).unwrap()).unwrap();
    let floats = |k: &str| -> Vec<f32> {
        meta[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let cfg = ResNetConfig::named("resnet18", Stem::Cifar, 4, 3, 10).unwrap();
    let u8_images = |k: &str| (f[k].to_dtype(DType::F32).unwrap() / 255.0).unwrap();
    let x = u8_images("x_u8");
    let x_adv = u8_images("x_adv_u8");
    let perturbed = &f["perturbed"];
    let y = f["y"].to_dtype(DType::U32).unwrap();
    let scalar = |k: &str| -> f64 {
        f[k].to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap_or_else(|e| panic!("{k}: {e}"))
    };
    let alpha = scalar("alpha");

    // The training attack (eval-mode network) is PyTorch's PGD.
    let mut tr = Trainer::new(cfg.clone(), floats("mean"), floats("std"), 0, &Device::Cpu).unwrap();
    tr.resume(&dir.join("tiny.safetensors")).unwrap();
    let pgd = PgdConfig {
        eps: 8.0 / 255.0,
        step: 2.0 / 255.0,
        iters: 2,
        random_start: false,
        seed: 0,
    };
    let ours = tr.adversarial(&x, &y, &pgd).unwrap();
    let d = max_abs_diff(&ours, &x_adv);
    let differ = common::tensor_f32(&((ours - &x_adv).unwrap().abs().unwrap()))
        .iter()
        .filter(|&&v| v > 1e-6)
        .count();
    assert!(
        differ * 200 <= x.elem_count(),
        "training PGD: {differ} pixels differ from PyTorch's (max {d})"
    );

    for variant in [
        Variant::Standard,
        Variant::Continuity,
        Variant::Adv,
        Variant::AdvContinuity,
    ] {
        // A fresh network per variant, as in the reference.
        let mut tr =
            Trainer::new(cfg.clone(), floats("mean"), floats("std"), 0, &Device::Cpu).unwrap();
        tr.resume(&dir.join("tiny.safetensors")).unwrap();
        let tc = TrainConfig {
            alpha,
            ..config(variant)
        };
        let (loss, ce, ds, _) = tr
            .loss_of(&x, &y, &tc, Some(&x_adv), Some(perturbed))
            .unwrap();
        let key = variant.name().replace('-', "_");
        let close = |got: f64, k: &str| {
            let want = scalar(&format!("{key}_{k}"));
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1e-3),
                "{key} {k}: semcon {got} vs PyTorch {want}"
            );
        };
        close(loss.to_scalar::<f32>().unwrap() as f64, "loss");
        close(ce, "ce");
        close(ds, "ds");
        let grads = loss.backward().unwrap();
        let vars = tr.varmap.data().lock().unwrap();
        for p in ["fc.weight", "conv1.weight", "layer2.0.bn1.weight"] {
            let g = grads
                .get(vars[p].as_tensor())
                .unwrap_or_else(|| panic!("{key}: no gradient for {p}"));
            let want = &f[&format!("{key}_grad_{p}")];
            let scale = common::tensor_f32(want)
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(g, want);
            assert!(
                diff <= 2e-4 * scale,
                "{key}: gradient of {p} differs from PyTorch's by {diff} (largest {scale})"
            );
        }
    }
}
