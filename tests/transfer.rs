//! Fine-tuning and transfer (`semcon train --init`, `semcon transfer`):
//! optimiser steps against PyTorch (tests/fixtures/make_transfer.py), the
//! linear probe's untouched backbone, reproducibility, head replacement as
//! torchvision's strict loading sees it, and the messages for what cannot be
//! fine-tuned as asked.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{expect_error_with, fixture, semcon, semcon_ok, tmp_dir};
use semcon::data::npyz::{save_npz, NpyArray};
use semcon::metrics::pgd::PgdConfig;
use semcon::model::ModelOptions;
use semcon::train::init::{linear_init, Freeze, HeadChoice};
use semcon::train::optim::{OptimConfig, OptimKind, Optimizer};
use semcon::train::{TrainConfig, Trainer, Variant};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    fixture("train").join("tiny.safetensors")
}

fn steps() -> HashMap<String, Tensor> {
    Tensor::read_npz(fixture("transfer").join("steps.npz"))
        .unwrap()
        .into_iter()
        .collect()
}

fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{what}[{i}]: semcon {g} vs PyTorch {w}"
        );
    }
}

fn config(optim: OptimConfig) -> TrainConfig {
    TrainConfig {
        variant: Variant::Standard,
        alpha: 0.0,
        epochs: 1,
        batch: 8,
        optim,
        seed: 0,
        pgd: PgdConfig {
            eps: 0.0,
            step: 0.0,
            iters: 0,
            random_start: false,
            seed: 0,
        },
    }
}

/// Two optimiser steps of each fine-tuning case on the fixture batch: the
/// losses, the first step's gradients, and every parameter and running
/// statistic after the steps, against PyTorch.
#[test]
fn fine_tuning_steps_match_pytorch() {
    let f = steps();
    let x = (f["x_u8"].to_dtype(DType::F32).unwrap() / 255.0).unwrap();
    let y = f["y"].to_dtype(DType::U32).unwrap();
    let y5 = Tensor::from_vec(
        vec_f32(&f["y"])
            .iter()
            .map(|v| *v as u32 % 5)
            .collect::<Vec<u32>>(),
        8,
        &Device::Cpu,
    )
    .unwrap();
    let o = |kind, lr, momentum, weight_decay| OptimConfig {
        kind,
        lr,
        momentum,
        weight_decay,
    };
    let cases = [
        (
            "full_sgd",
            o(OptimKind::Sgd, 0.05, 0.9, 1e-4),
            Freeze::None,
            false,
        ),
        (
            "full_adam",
            o(OptimKind::Adam, 1e-3, 0.0, 1e-4),
            Freeze::None,
            false,
        ),
        (
            "full_adamw",
            o(OptimKind::Adamw, 1e-3, 0.0, 1e-2),
            Freeze::None,
            false,
        ),
        (
            "probe",
            o(OptimKind::Adam, 1e-2, 0.0, 0.0),
            Freeze::Backbone,
            false,
        ),
        (
            "new_head",
            o(OptimKind::Sgd, 0.05, 0.9, 0.0),
            Freeze::None,
            true,
        ),
    ];
    for (case, optim, freeze, new_head) in cases {
        let (classes, head, labels) = if new_head {
            (5, HeadChoice::Replace, &y5)
        } else {
            (10, HeadChoice::Keep, &y)
        };
        let (tr, report) = Trainer::from_checkpoint(
            &tiny(),
            &ModelOptions::default(),
            classes,
            head,
            freeze,
            0,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(report.head_replaced, new_head, "{case}");
        let vars: HashMap<String, candle_core::Var> = tr
            .varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if new_head {
            // Both sides start from the same new head.
            vars["fc.weight"].set(&f["head_weight"]).unwrap();
            vars["fc.bias"].set(&f["head_bias"]).unwrap();
        }
        let cfg = config(optim);
        let trainable = tr.trainable();
        let mut opt = Optimizer::new(trainable.iter().map(|(_, v)| v.clone()).collect(), optim);
        for step in 0..2 {
            let (loss, ..) = tr.loss_of(&x, labels, &cfg, None, None).unwrap();
            close(
                &[loss.to_scalar::<f32>().unwrap()],
                &vec_f32(&f[&format!("{case}_loss{step}")]),
                &format!("{case} loss at step {step}"),
            );
            let grads = loss.backward().unwrap();
            if step == 0 {
                let mut seen = 0;
                for (name, var) in &trainable {
                    let Some(want) = f.get(&format!("{case}_grad_{name}")) else {
                        continue;
                    };
                    let g = grads
                        .get(var.as_tensor())
                        .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
                    close(&vec_f32(g), &vec_f32(want), &format!("{case} grad {name}"));
                    seen += 1;
                }
                let want = f
                    .keys()
                    .filter(|k| k.starts_with(&format!("{case}_grad_")))
                    .count();
                assert_eq!(
                    seen, want,
                    "{case}: semcon trains other tensors than PyTorch"
                );
            }
            opt.step(&grads).unwrap();
        }
        let prefix = format!("{case}_after_");
        let mut checked = 0;
        for (k, want) in f.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            let name = &k[prefix.len()..];
            let got = vars
                .get(name)
                .unwrap_or_else(|| panic!("{case}: semcon has no {name}"));
            close(
                &vec_f32(got.as_tensor()),
                &vec_f32(want),
                &format!("{case} {name} after two steps"),
            );
            checked += 1;
        }
        assert!(checked >= 8, "{case}: only {checked} tensors compared");
    }
}

/// A dataset of the fixture images as an .npz with both splits: `classes`
/// classes (labels modulo), `n` training images (repeated as needed).
fn dataset(dir: &Path, classes: u32, n: usize) -> PathBuf {
    let src = semcon::data::npz::load(
        &fixture("eval").join("fmnist_colour120.npz"),
        semcon::data::Split::Test,
    )
    .unwrap();
    let l = src.image_len();
    let pick = |count: usize, offset: usize| {
        let idx: Vec<usize> = (0..count).map(|i| (i + offset) % src.len()).collect();
        let x: Vec<u8> = idx
            .iter()
            .flat_map(|&i| {
                src.image(i)
                    .iter()
                    .map(|v| (v * 255.0).round() as u8)
                    .collect::<Vec<_>>()
            })
            .collect();
        let y: Vec<i64> = idx
            .iter()
            .map(|&i| (src.labels[i] % classes) as i64)
            .collect();
        (
            Tensor::from_vec(
                x,
                (count, src.channels, src.height, src.width),
                &Device::Cpu,
            )
            .unwrap(),
            Tensor::from_vec(y, count, &Device::Cpu).unwrap(),
        )
    };
    assert_eq!(l, 3 * 28 * 28);
    let (xtr, ytr) = pick(n, 0);
    let (xte, yte) = pick(40, 80);
    let p = dir.join(format!("target{classes}.npz"));
    save_npz(
        &p,
        &[
            ("x_train", NpyArray::Tensor(&xtr)),
            ("y_train", NpyArray::Tensor(&ytr)),
            ("x_test", NpyArray::Tensor(&xte)),
            ("y_test", NpyArray::Tensor(&yte)),
        ],
    )
    .unwrap();
    p
}

fn tensors(p: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

fn same_bytes(a: &Tensor, b: &Tensor) -> bool {
    a.dtype() == b.dtype()
        && a.dims() == b.dims()
        && match a.dtype() {
            DType::I64 => {
                a.flatten_all().unwrap().to_vec1::<i64>().unwrap()
                    == b.flatten_all().unwrap().to_vec1::<i64>().unwrap()
            }
            _ => vec_f32(a)
                .iter()
                .zip(vec_f32(b))
                .all(|(x, y)| x.to_bits() == y.to_bits()),
        }
}

#[test]
fn linear_probe_leaves_backbone_bit_identical_and_runs_repeat() {
    let dir = tmp_dir("transfer_probe");
    let data = dataset(&dir, 10, 48);
    let run = |out: &str, freeze: &str| {
        let out = dir.join(out);
        semcon_ok([
            "train",
            "--init",
            tiny().to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--freeze",
            freeze,
            "--epochs",
            "2",
            "--batch",
            "16",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ]);
        out
    };
    let before = tensors(&tiny());
    let probe = tensors(&run("probe.safetensors", "backbone"));
    assert_eq!(
        before.keys().collect::<std::collections::BTreeSet<_>>(),
        probe.keys().collect(),
        "the probe writes the checkpoint's tensors, no more, no fewer"
    );
    let mut fc_moved = false;
    for (k, t) in &before {
        if k.starts_with("fc.") {
            fc_moved |= !same_bytes(t, &probe[k]);
        } else {
            assert!(
                same_bytes(t, &probe[k]),
                "linear probe changed backbone tensor {k}"
            );
        }
    }
    assert!(fc_moved, "the linear probe did not train the head");

    // Full fine-tuning changes the backbone (BatchNorm statistics included),
    // the same way twice.
    let a = tensors(&run("full_a.safetensors", "none"));
    let b = tensors(&run("full_b.safetensors", "none"));
    for k in [
        "conv1.weight",
        "layer1.0.bn1.running_mean",
        "layer1.0.bn1.num_batches_tracked",
    ] {
        assert!(
            !same_bytes(&before[k], &a[k]),
            "full fine-tuning left {k} alone"
        );
    }
    for (k, t) in &a {
        assert!(
            same_bytes(t, &b[k]),
            "fine-tuning with one seed is not reproducible: {k}"
        );
    }
}

#[test]
fn replaced_head_is_what_torchvision_loads_strictly() {
    let dir = tmp_dir("transfer_head");
    let data = dataset(&dir, 5, 24);
    // A tiny rate keeps the new head at its initial values.
    let out = dir.join("five.safetensors");
    let r = semcon([
        "train",
        "--init",
        tiny().to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--optimizer",
        "sgd",
        "--momentum",
        "0",
        "--lr",
        "1e-9",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("replaced: 10 -> 5 outputs"),
        "the head replacement is not announced: {}",
        r.stderr
    );
    let got = tensors(&out);
    let want: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture("transfer").join("keys_5.json")).unwrap(),
    )
    .unwrap();
    let mut names: Vec<&String> = got.keys().collect();
    names.sort();
    let mut want_names: Vec<&String> = want.keys().collect();
    want_names.sort();
    assert_eq!(
        names, want_names,
        "keys differ from torchvision's 5-class state dict"
    );
    for (k, w) in &want {
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got[k].dims(), shape.as_slice(), "{k}: shape");
        let dtype = match got[k].dtype() {
            DType::F32 => "float32",
            DType::I64 => "int64",
            d => panic!("{k}: unexpected dtype {d:?}"),
        };
        assert_eq!(w["dtype"].as_str().unwrap(), dtype, "{k}: dtype");
    }
    // The new head is nn.Linear's: uniform in +-1/sqrt(32), seeded.
    let w = vec_f32(&got["fc.weight"]);
    let bound = 1.0 / 32f32.sqrt();
    assert!(w.iter().all(|v| v.abs() <= bound * 1.0001));
    let (w0, b0) = linear_init(5, 32, 0);
    close(&w, &w0, "new head weight after a step of lr 1e-9");
    close(&vec_f32(&got["fc.bias"]), &b0, "new head bias");
    // The backbone is the checkpoint's (lr 1e-9 moves nothing visible).
    close(
        &vec_f32(&got["layer4.1.conv2.weight"]),
        &vec_f32(&tensors(&tiny())["layer4.1.conv2.weight"]),
        "backbone",
    );
}

#[test]
fn transfer_compares_checkpoints_trained_the_same_way() {
    let dir = tmp_dir("transfer_cmd");
    let data = dataset(&dir, 10, 32);
    // Two names for one checkpoint: the same fine-tuning gives the same row.
    let copy = dir.join("copy.safetensors");
    std::fs::copy(tiny(), &copy).unwrap();
    std::fs::copy(fixture("train").join("tiny.json"), dir.join("copy.json")).unwrap();
    let out_dir = dir.join("tuned");
    let r = semcon_ok([
        "transfer",
        "-c",
        tiny().to_str().unwrap(),
        "-c",
        copy.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "16",
        "--eval",
        "--pgd-iters",
        "2",
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["model"], "tiny");
    assert_eq!(rows[1]["model"], "copy");
    for k in ["test_accuracy", "train_accuracy"] {
        assert_eq!(rows[0][k], rows[1][k], "{k} differs between identical runs");
    }
    let e = &rows[0]["eval"];
    for k in ["colour_accuracy", "colour_ds_mean", "pgd_accuracy"] {
        assert!(e[k].as_f64().is_some(), "--eval lacks {k}: {e}");
    }
    assert_eq!(v["test_samples"], 40);
    // The fine-tuned checkpoints are kept and load; their sidecar says how.
    for name in ["tiny", "copy"] {
        let p = out_dir.join(format!("{name}.safetensors"));
        let info = semcon_ok(["info", p.to_str().unwrap(), "--format", "json"]);
        assert!(info.stdout.contains("resnet18"), "{}", info.stdout);
        let sc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(sc["training"]["init"]["head_replaced"], false);
        let acc = sc["metrics"]["test"]["accuracy"].as_f64().unwrap();
        assert_eq!(serde_json::json!(acc), rows[0]["test_accuracy"]);
    }
    // The table names every model.
    let t = semcon_ok([
        "transfer",
        "-c",
        tiny().to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--freeze",
        "backbone",
        "--out-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        t.stdout.contains("linear probe") && t.stdout.contains("tiny"),
        "{}",
        t.stdout
    );
}

#[test]
fn fine_tuning_refusals_name_the_flag() {
    let dir = tmp_dir("transfer_errors");
    let data = dataset(&dir, 5, 16);
    let out = dir.join("x.safetensors");
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "train",
            "--init",
            tiny().to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        semcon(a)
    };
    expect_error_with(
        &base(&["--head", "keep"]),
        &["--head keep", "10 outputs", "5 classes"],
    );
    // The model was trained at 28x28 (its sidecar): another size needs --input-size.
    expect_error_with(&base(&["--lr", "0"]), &["--lr"]);
    let small = dir.join("small.npz");
    let x = Tensor::zeros((4, 3, 8, 8), DType::U8, &Device::Cpu).unwrap();
    let y = Tensor::new(&[0i64, 1, 0, 1], &Device::Cpu).unwrap();
    save_npz(
        &small,
        &[("x", NpyArray::Tensor(&x)), ("y", NpyArray::Tensor(&y))],
    )
    .unwrap();
    let r = semcon([
        "train",
        "--init",
        tiny().to_str().unwrap(),
        "-d",
        small.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["8x8", "28x28", "--input-size 28x28"]);
    // With the flag it trains (resized), and the sidecar records the size.
    let r = semcon([
        "train",
        "--init",
        tiny().to_str().unwrap(),
        "-d",
        small.to_str().unwrap(),
        "--input-size",
        "28",
        "--batch",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    // Colour images for a gray model need --grayscale.
    let gray = common::model_fixture("resnet34_gray.safetensors");
    let r = semcon([
        "train",
        "--init",
        gray.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--input-size",
        "28",
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["3 channels", "--grayscale"]);
    // Fine-tuning flags without --init.
    let r = semcon([
        "train",
        "-d",
        data.to_str().unwrap(),
        "--freeze",
        "backbone",
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["--freeze", "--init"]);
    assert!(!dir.join("x.safetensors.tmp").exists());
}

/// A ResNeXt (grouped convolutions) from a `.pth` fine-tunes too: a linear
/// probe keeps every float tensor of the backbone as the `.pth` holds it.
#[test]
fn resnext_from_pth_probes_with_its_backbone_intact() {
    let dir = tmp_dir("transfer_resnext");
    let x = Tensor::from_vec(
        (0..16 * 3 * 32 * 32)
            .map(|i| (i * 37 % 251) as u8)
            .collect::<Vec<u8>>(),
        (16, 3, 32, 32),
        &Device::Cpu,
    )
    .unwrap();
    let y = Tensor::from_vec(
        (0..16).map(|i| i % 4).collect::<Vec<i64>>(),
        16,
        &Device::Cpu,
    )
    .unwrap();
    let data = dir.join("rx.npz");
    save_npz(
        &data,
        &[("x", NpyArray::Tensor(&x)), ("y", NpyArray::Tensor(&y))],
    )
    .unwrap();
    let src = common::model_fixture("resnext_slim.pth");
    let out = dir.join("rx.safetensors");
    let r = semcon([
        "train",
        "--init",
        src.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--freeze",
        "backbone",
        "--batch",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("replaced: 10 -> 4"), "{}", r.stderr);
    let before = semcon::model::checkpoint::read_state_dict(&src).unwrap();
    let after = tensors(&out);
    for (k, t) in &before {
        if !k.starts_with("fc.") {
            assert!(same_bytes(t, &after[k]), "the probe changed {k}");
        }
    }
    assert_eq!(after["fc.weight"].dims()[0], 4);
}

/// The families described as layers (ViT, ConvNeXt, EfficientNet) fine-tune
/// as a linear probe: two Adam steps of a new 4-class head on the backbone's
/// eval-mode features, against PyTorch (tests/fixtures/make_probe.py): the
/// losses, the first step's gradients and the head after the steps; and the
/// inference model made from the trainer gives the trainer's logits.
#[test]
fn described_families_probe_as_pytorch() {
    let f: HashMap<String, Tensor> =
        Tensor::read_npz(fixture("transfer").join("probe_families.npz"))
            .unwrap()
            .into_iter()
            .collect();
    let opts = ModelOptions {
        mean: Some(vec![0.5; 3]),
        std: Some(vec![0.25; 3]),
        ..Default::default()
    };
    let optim = OptimConfig {
        kind: OptimKind::Adam,
        lr: 1e-2,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let cases = [
        ("vit_tiny", "vit_tiny.safetensors", "heads.head"),
        ("convnext_slim", "convnext_slim.pth", "classifier.2"),
        (
            "efficientnet_slim",
            "efficientnet_slim.safetensors",
            "classifier.1",
        ),
    ];
    for (name, file, head) in cases {
        let (tr, report) = Trainer::from_checkpoint(
            &common::model_fixture(file),
            &opts,
            4,
            HeadChoice::Auto,
            Freeze::Backbone,
            0,
            &Device::Cpu,
        )
        .unwrap();
        assert!(report.head_replaced, "{name}");
        assert_eq!(report.head, head, "{name}");
        let trainable = tr.trainable();
        let names: Vec<&str> = trainable.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [format!("{head}.bias"), format!("{head}.weight")],
            "{name}: the probe trains the head only"
        );
        let key = |k: &str| &f[&format!("{name}_{k}")];
        // Both sides start from the same new head.
        trainable[0].1.set(key("head_bias")).unwrap();
        trainable[1].1.set(key("head_weight")).unwrap();
        let x = (key("x_u8").to_dtype(DType::F32).unwrap() / 255.0).unwrap();
        let y = key("y").to_dtype(DType::U32).unwrap();
        let cfg = config(optim);
        let mut opt = Optimizer::new(trainable.iter().map(|(_, v)| v.clone()).collect(), optim);
        for step in 0..2 {
            let (loss, ..) = tr.loss_of(&x, &y, &cfg, None, None).unwrap();
            close(
                &[loss.to_scalar::<f32>().unwrap()],
                &vec_f32(key(&format!("loss{step}"))),
                &format!("{name} loss at step {step}"),
            );
            let grads = loss.backward().unwrap();
            if step == 0 {
                for (part, (_, var)) in ["bias", "weight"].iter().zip(&trainable) {
                    let g = grads.get(var.as_tensor()).expect("head gradient");
                    close(
                        &vec_f32(g),
                        &vec_f32(key(&format!("grad_{part}"))),
                        &format!("{name} grad {part}"),
                    );
                }
            }
            opt.step(&grads).unwrap();
        }
        for (part, (_, var)) in ["bias", "weight"].iter().zip(&trainable) {
            close(
                &vec_f32(var.as_tensor()),
                &vec_f32(key(&format!("after_{part}"))),
                &format!("{name} head {part} after two steps"),
            );
        }
        let m = tr.model(PathBuf::from(name)).unwrap();
        assert_eq!(m.num_classes(), 4);
        close(
            &vec_f32(&m.logits(&x).unwrap()),
            &vec_f32(&tr.logits(&x, false).unwrap()),
            &format!("{name}: the inference model's logits"),
        );
    }
}

/// `train --init` of a ViT from a `.pth` with `--freeze backbone`: every
/// tensor but the head's is written back bit-identical, the file has
/// exactly the keys, shapes and dtypes of torchvision's 4-class
/// VisionTransformer (what `load_state_dict(strict=True)` checks), its
/// sidecar keeps what the shapes do not say (the head count), and it loads
/// in semcon again; full fine-tuning and another image size are refused,
/// naming the flag.
#[test]
fn vit_probe_writes_what_torchvision_loads_strictly() {
    let dir = tmp_dir("transfer_vit");
    let n = 16;
    let x = Tensor::from_vec(
        (0..n * 3 * 32 * 32)
            .map(|i| (i * 53 % 251) as u8)
            .collect::<Vec<u8>>(),
        (n, 3, 32, 32),
        &Device::Cpu,
    )
    .unwrap();
    let y = Tensor::from_vec(
        (0..n as i64).map(|i| i % 4).collect::<Vec<i64>>(),
        n,
        &Device::Cpu,
    )
    .unwrap();
    let data = dir.join("v.npz");
    save_npz(
        &data,
        &[("x", NpyArray::Tensor(&x)), ("y", NpyArray::Tensor(&y))],
    )
    .unwrap();
    // The fixture's sidecar comes along: it gives the head count (hidden
    // size 64 is none of torchvision's), which the written sidecar must keep.
    let src = dir.join("vit.pth");
    std::fs::copy(common::model_fixture("vit_tiny.pth"), &src).unwrap();
    std::fs::copy(common::model_fixture("vit_tiny.json"), dir.join("vit.json")).unwrap();
    let out = dir.join("probed.safetensors");
    let train = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "train",
            "--init",
            src.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--batch",
            "8",
            "--epochs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        semcon(a)
    };
    expect_error_with(
        &train(&[]),
        &["ViT", "linear probe only", "--freeze backbone"],
    );
    assert!(!out.exists(), "a refused run wrote a checkpoint");
    let r = train(&["--freeze", "backbone"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("classifier head heads.head replaced: 10 -> 4"),
        "{}",
        r.stderr
    );
    let before = semcon::model::checkpoint::read_state_dict(&src).unwrap();
    let after = tensors(&out);
    for (k, t) in &before {
        if !k.starts_with("heads.head.") {
            assert!(same_bytes(t, &after[k]), "the probe changed {k}");
        }
    }
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("transfer").join("probe_keys.json")).unwrap(),
    )
    .unwrap();
    let want = want["vit_tiny"].as_object().unwrap();
    let mut names: Vec<&String> = after.keys().collect();
    names.sort();
    let mut want_names: Vec<&String> = want.keys().collect();
    want_names.sort();
    assert_eq!(names, want_names, "keys differ from torchvision's");
    for (k, w) in want {
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(after[k].dims(), shape.as_slice(), "{k}: shape");
        assert_eq!(w["dtype"].as_str().unwrap(), "float32", "{k}");
        assert_eq!(after[k].dtype(), DType::F32, "{k}: dtype");
    }
    // The head learnt (two epochs of Adam move it off its seeded start).
    let (w0, _) = linear_init(4, 64, 0);
    assert!(vec_f32(&after["heads.head.weight"])
        .iter()
        .zip(&w0)
        .any(|(a, b)| (a - b).abs() > 1e-4));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("probed.json")).unwrap()).unwrap();
    assert_eq!(sidecar["num_heads"], 4, "{sidecar}");
    assert_eq!(sidecar["num_classes"], 4);
    assert_eq!(sidecar["training"]["init"]["freeze"], "backbone");
    let info = semcon_ok(["info", out.to_str().unwrap(), "--format", "json"]);
    let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(info["num_classes"]["value"], 4, "{info}");
    assert_eq!(info["family"], "ViT", "{info}");
    // A ViT takes its own image size only: another needs --input-size.
    let small = dir.join("small.npz");
    let x = Tensor::zeros((4, 3, 28, 28), DType::U8, &Device::Cpu).unwrap();
    let y = Tensor::new(&[0i64, 1, 0, 1], &Device::Cpu).unwrap();
    save_npz(
        &small,
        &[("x", NpyArray::Tensor(&x)), ("y", NpyArray::Tensor(&y))],
    )
    .unwrap();
    let r = semcon([
        "train",
        "--init",
        src.to_str().unwrap(),
        "-d",
        small.to_str().unwrap(),
        "--freeze",
        "backbone",
        "--out",
        dir.join("small.safetensors").to_str().unwrap(),
    ]);
    expect_error_with(&r, &["32x32", "28x28", "--input-size 32x32"]);
    let _ = std::fs::remove_dir_all(&dir);
}
