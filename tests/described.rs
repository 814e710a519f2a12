//! The ViT, ConvNeXt and EfficientNet families against torchvision: small
//! configurations made by torchvision's own classes with every weight
//! randomised (tests/fixtures/make_families.py) give logits, every tap and
//! the input gradient of the cross-entropy within 1e-4; every full-size
//! torchvision variant (vit_b_16 ... vit_h_14, efficientnet_b0 ... b7,
//! convnext_tiny ... large) is recognised by name with torchvision's
//! parameter count; bad input is named.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use semcon::model::{self, checkpoint::Sidecar, ModelOptions, Tap};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// |semcon - pytorch| <= TOL * max(1, |pytorch|).
const TOL: f32 = 1e-4;

/// (fixture, family, variant name begins with, taps in order)
const CASES: [(&str, &str, &str, &[&str]); 4] = [
    (
        "vit_tiny",
        "ViT",
        "vit (patch 8, 2 blocks, hidden 64, 4 heads",
        &["block1", "block2", "penultimate", "logits"],
    ),
    (
        "vit_prelogits",
        "ViT",
        "vit (patch 4, 1 blocks",
        &["block1", "penultimate", "logits"],
    ),
    (
        "convnext_slim",
        "ConvNeXt",
        "convnext (widths [16, 32, 48], depths [1, 2, 1])",
        &["stage1", "stage2", "stage3", "penultimate", "logits"],
    ),
    (
        "efficientnet_slim",
        "EfficientNet",
        "efficientnet (stem 16",
        &[
            "stage1",
            "stage2",
            "stage3",
            "stage4",
            "penultimate",
            "logits",
        ],
    ),
];

fn taps_of(name: &str) -> HashMap<String, Tensor> {
    read_npz(&model_fixture(&format!("{name}_taps.npz")))
}

fn check_against_pytorch(name: &str, file: &str, taps: &[&str]) {
    let path = model_fixture(file);
    let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
    let x = Tensor::read_npy(model_fixture(&format!("{name}_input.npy"))).unwrap();
    let want = taps_of(name);
    // info lists them from the input on; --layer all starts at the logits
    let listed: Vec<String> = m.net.taps().iter().map(|t| t.0.to_string()).collect();
    assert_eq!(listed, taps, "{file}: taps");
    let all: Vec<String> = m.taps().iter().map(|t| t.to_string()).collect();
    assert_eq!(all[..2], ["logits", "penultimate"], "{file}");
    assert_eq!(all.len(), taps.len(), "{file}");
    let parsed: Vec<Tap> = taps.iter().map(|t| t.parse().unwrap()).collect();
    // one tap at a time, and all in one pass
    let many = m.features_many(&x, &parsed).unwrap();
    for (i, t) in parsed.iter().enumerate() {
        let w = &want[&t.to_string()];
        let got = m.features(&x, *t).unwrap();
        assert_eq!(got.dims(), w.dims(), "{file} {t}");
        assert_close(
            &tensor_f32(&got),
            &tensor_f32(w),
            TOL,
            &format!("{file} {t}"),
        );
        assert_close(
            &tensor_f32(&many[i]),
            &tensor_f32(w),
            TOL,
            &format!("{file} {t} (many)"),
        );
    }
    assert_loss_and_grad_match(&m, name);
}

#[test]
fn small_networks_match_pytorch() {
    for (name, family, arch, taps) in CASES {
        for fmt in ["safetensors", "pth"] {
            let file = format!("{name}.{fmt}");
            check_against_pytorch(name, &file, taps);
            let m = model::load(
                &model_fixture(&file),
                &ModelOptions::default(),
                &Device::Cpu,
            )
            .unwrap();
            assert_eq!(m.net.family(), family, "{file}");
            assert!(m.arch_name().starts_with(arch), "{file}: {}", m.arch_name());
            assert_eq!(m.path_name().unwrap(), "layers", "{file}");
        }
    }
    // torchvision's released ViT files name the MLP mlp.linear_1/2
    check_against_pytorch("vit_tiny", "vit_tiny_oldmlp.safetensors", CASES[0].3);
}

/// The hand-written input gradient (`model::backward`, what the CPU runs)
/// against candle's autograd over the same layers (what a GPU runs), from
/// the input and from each convolutional stage (GradCAM), with a seed at
/// the logits that weighs every class.
#[test]
fn hand_written_gradient_matches_autograd() {
    for (name, ..) in CASES {
        let m = model::load(
            &model_fixture(&format!("{name}.safetensors")),
            &ModelOptions::default(),
            &Device::Cpu,
        )
        .unwrap();
        let model::net::Net::Layers(l) = &m.net else {
            panic!("{name}: not a described network")
        };
        let x = Tensor::read_npy(model_fixture(&format!("{name}_input.npy"))).unwrap();
        let xp = m.prepare(&x).unwrap();
        let seed = |lg: &Tensor| {
            let (b, k) = lg.dims2()?;
            let v: Vec<f32> = (0..b * k)
                .map(|i| ((i * 7919) % 13) as f32 / 6.0 - 1.0)
                .collect();
            Tensor::from_vec(v, (b, k), lg.device())
        };
        let graph = |start: &Tensor, from: usize| {
            let v = candle_core::Var::from_tensor(start).unwrap();
            let lg = semcon::model::layers::run(&l.ops[from..], v.as_tensor(), &[Tap::Logits])
                .unwrap()
                .pop()
                .unwrap();
            let grads = (&lg * seed(&lg).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (lg, grads.get(v.as_tensor()).unwrap().clone())
        };
        let (lg, g) = l.logits_and_grad(&xp, seed).unwrap();
        let (lg_ref, g_ref) = graph(&xp, 0);
        assert_close(&tensor_f32(&lg), &tensor_f32(&lg_ref), 1e-5, name);
        assert_close_scaled(&tensor_f32(&g), &tensor_f32(&g_ref), 1e-5, name);
        for (tap, ..) in l.taps.iter().filter(|t| matches!(t.0, Tap::Stage(_))) {
            let maps = l.maps(&xp, *tap).unwrap();
            let from = l
                .ops
                .iter()
                .position(|op| matches!(op, semcon::model::layers::Op::Tap(t) if t == tap))
                .unwrap()
                + 1;
            let (_, g) = l.logits_and_grad_from_maps(&maps, *tap, seed).unwrap();
            let (_, g_ref) = graph(&maps, from);
            assert_close_scaled(
                &tensor_f32(&g),
                &tensor_f32(&g_ref),
                1e-5,
                &format!("{name} {tap}"),
            );
        }
    }
}

/// The parameter counts torchvision gives for the small models.
#[test]
fn parameter_counts_are_torchvision_s() {
    let counts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_fixture("families_params.json")).unwrap(),
    )
    .unwrap();
    for (name, ..) in CASES {
        let r = semcon_ok([
            "info",
            model_fixture(&format!("{name}.pth")).to_str().unwrap(),
            "--format",
            "json",
        ]);
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(j["parameters"], counts[name], "{name}");
        assert!(j["taps"].as_array().unwrap().len() >= 3, "{name}");
    }
}

struct Variant {
    params: usize,
    bn_eps: Option<f64>,
    shapes: HashMap<String, Vec<usize>>,
}

/// torchvision's full-size variants as `make_families.py` recorded them.
fn torchvision_variants() -> HashMap<String, Variant> {
    let f = std::fs::File::open(model_fixture("families_shapes.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(arch, e)| {
            let shapes = e["shapes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, s)| {
                    let dims = s.as_array().unwrap();
                    (
                        k.clone(),
                        dims.iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                    )
                })
                .collect();
            (
                arch.clone(),
                Variant {
                    params: e["params"].as_u64().unwrap() as usize,
                    bn_eps: e["bn_eps"].as_f64(),
                    shapes,
                },
            )
        })
        .collect()
}

/// A state dict of `shapes` with placeholder weights (zeros; variances 1).
fn placeholder(shapes: &HashMap<String, Vec<usize>>) -> HashMap<String, Tensor> {
    shapes
        .iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, s)| {
            let t = if k.ends_with("running_var") {
                Tensor::ones(s.as_slice(), DType::F32, &Device::Cpu)
            } else {
                Tensor::zeros(s.as_slice(), DType::F32, &Device::Cpu)
            };
            (k.clone(), t.unwrap())
        })
        .collect()
}

/// Every full-size variant is recognised by its torchvision name, with
/// torchvision's parameter count, its BatchNorm eps (EfficientNet B5–B7:
/// 1e-3) and its input size (ViT: 224).
#[test]
fn every_full_size_torchvision_variant_is_recognised() {
    let variants = torchvision_variants();
    assert_eq!(variants.len(), 17);
    for (arch, v) in &variants {
        let tensors = placeholder(&v.shapes);
        let net = model::load::build_described(&tensors, &Sidecar::default(), Path::new(arch))
            .unwrap()
            .unwrap_or_else(|| panic!("{arch} not recognised"));
        assert_eq!(&net.arch, arch);
        assert_eq!(net.params, v.params, "{arch}: parameters");
        assert_eq!((net.in_channels, net.num_classes), (3, 1000), "{arch}");
        if let Some(eps) = v.bn_eps {
            let s = net
                .settings
                .iter()
                .find(|s| s.name == "BatchNorm eps")
                .unwrap();
            assert_eq!(s.value.parse::<f64>().unwrap(), eps, "{arch}: eps");
        }
        if arch.starts_with("vit") {
            assert_eq!(net.image_size, Some(224), "{arch}");
            let heads = net
                .settings
                .iter()
                .find(|s| s.name == "attention heads")
                .unwrap();
            let want = if arch.starts_with("vit_b") {
                "12"
            } else {
                "16"
            };
            assert_eq!(heads.value, want, "{arch}");
        }
    }
}

/// Full-size vit_b_16, efficientnet_b0 and convnext_tiny with random
/// weights load from a file and run; ViT-B/16 refuses other image sizes.
#[test]
fn full_size_variants_load_and_run() {
    let variants = torchvision_variants();
    let dev = Device::Cpu;
    let dir = tmp_dir("described_full");
    for (arch, side) in [
        ("vit_b_16", 224),
        ("efficientnet_b0", 64),
        ("convnext_tiny", 64),
    ] {
        let mut tensors = HashMap::new();
        for (k, s) in &variants[arch].shapes {
            if k.ends_with("num_batches_tracked") {
                continue;
            }
            let t = if k.ends_with("running_var") || (s.len() == 1 && k.ends_with("weight")) {
                Tensor::ones(s.as_slice(), DType::F32, &dev).unwrap()
            } else {
                let fan_in: usize = s.iter().skip(1).product::<usize>().max(1);
                Tensor::randn(0f32, 1f32, s.as_slice(), &dev)
                    .unwrap()
                    .affine((1.0 / fan_in as f64).sqrt(), 0.0)
                    .unwrap()
            };
            tensors.insert(k.clone(), t);
        }
        let path = dir.join(format!("{arch}.safetensors"));
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let m = model::load(&path, &ModelOptions::default(), &dev).unwrap();
        assert_eq!(m.arch_name(), arch);
        let x = Tensor::rand(0f32, 1f32, (1, 3, side, side), &dev).unwrap();
        let logits = m.logits(&x).unwrap();
        assert_eq!(logits.dims(), &[1, 1000], "{arch}");
        assert!(tensor_f32(&logits).iter().all(|v| v.is_finite()), "{arch}");
        if arch == "vit_b_16" {
            assert_eq!(m.input_size, Some((224, 224)));
            let small = Tensor::rand(0f32, 1f32, (1, 3, 64, 64), &dev).unwrap();
            let e = m.logits(&small).unwrap_err().to_string();
            assert!(e.contains("224x224") && e.contains("64x64"), "{e}");
            let opts = ModelOptions {
                input_size: Some((32, 32)),
                ..Default::default()
            };
            let e = model::load(&path, &opts, &dev).unwrap_err().to_string();
            assert!(e.contains("32x32") && e.contains("224x224"), "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad input, one clear line each: a setting that cannot be inferred and
/// is not given, a missing or mis-shaped tensor, an unknown family.
#[test]
fn bad_input_is_named() {
    let dir = tmp_dir("described_bad");
    // a ViT of a hidden size torchvision does not build, without num_heads
    let p = dir.join("vit.safetensors");
    std::fs::copy(model_fixture("vit_tiny.safetensors"), &p).unwrap();
    let r = semcon(["info", p.to_str().unwrap()]);
    expect_error_with(&r, &["num_heads", "vit.json", "64"]);
    // an EfficientNet of no B0-B7 without stage_strides
    let p = dir.join("eff.pth");
    std::fs::copy(model_fixture("efficientnet_slim.pth"), &p).unwrap();
    let r = semcon(["info", p.to_str().unwrap()]);
    expect_error_with(&r, &["stage_strides", "eff.json"]);
    // a missing and a mis-shaped tensor
    let dev = Device::Cpu;
    let mut t: HashMap<String, Tensor> =
        candle_core::safetensors::load(model_fixture("convnext_slim.safetensors"), &dev)
            .unwrap()
            .into_iter()
            .collect();
    t.remove("features.3.1.block.3.weight");
    let p = dir.join("convnext_missing.safetensors");
    candle_core::safetensors::save(&t, &p).unwrap();
    let r = semcon(["info", p.to_str().unwrap()]);
    expect_error_with(&r, &["features.3.1.block.3.weight", "missing", "[128, 32]"]);
    t.insert(
        "features.3.1.block.3.weight".into(),
        Tensor::zeros((128, 31), DType::F32, &dev).unwrap(),
    );
    let p = dir.join("convnext_shape.safetensors");
    candle_core::safetensors::save(&t, &p).unwrap();
    let r = semcon(["info", p.to_str().unwrap()]);
    expect_error_with(
        &r,
        &["features.3.1.block.3.weight", "[128, 31]", "[128, 32]"],
    );
    // an unknown family: the families known and the first keys
    let mut u = HashMap::new();
    u.insert(
        "backbone.stem.weight".to_string(),
        Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap(),
    );
    let p = dir.join("unknown.safetensors");
    candle_core::safetensors::save(&u, &p).unwrap();
    let r = semcon(["info", p.to_str().unwrap()]);
    expect_error_with(
        &r,
        &[
            "ViT",
            "EfficientNet",
            "ConvNeXt",
            "ResNet",
            "backbone.stem.weight",
        ],
    );
    // a ViT asked for a tap it does not have
    let r = semcon([
        "features",
        "-c",
        model_fixture("vit_tiny.safetensors").to_str().unwrap(),
        "--layer",
        "stage2",
        "--out",
        dir.join("f.npz").to_str().unwrap(),
    ]);
    expect_error_with(&r, &["stage2", "block1"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every command with every family: `eval` (a perturbation, DS, PGD, k* at
/// every layer both models have) with a ViT beside a ResNet; `features
/// --layer all` through the CLI against PyTorch's taps; `attack` on a
/// ConvNeXt and an EfficientNet; `train --init` refusing a ViT by name.
#[test]
fn every_command_takes_every_family() {
    let dir = tmp_dir("described_cli");
    let vit = model_fixture("vit_tiny.safetensors");
    let res = model_fixture("resnet18_cifar.safetensors");
    let cifar = dataset_fixture("cifar10");
    let r = semcon_ok([
        "eval",
        "-c",
        vit.to_str().unwrap(),
        "-c",
        res.to_str().unwrap(),
        "-d",
        cifar.to_str().unwrap(),
        "--perturb",
        "hue:1",
        "--pgd",
        "8/255",
        "--kstar",
        "--layer",
        "all",
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let models = j["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert!(models[0]["arch"]
        .as_str()
        .unwrap()
        .starts_with("vit (patch 8"));
    assert_eq!(models[1]["arch"], "resnet18");
    for m in models {
        assert!(
            m["perturbations"][0]["ds_mean"].as_f64().unwrap() > 0.0,
            "{m}"
        );
        assert!(m["pgd"][0]["accuracy"].is_number(), "{m}");
        let layers: Vec<&str> = m["kstar_layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["layer"].as_str().unwrap())
            .collect();
        assert_eq!(layers, ["logits", "penultimate"]);
    }
    // features at every layer through the CLI, against PyTorch
    for name in ["convnext_slim", "efficientnet_slim", "vit_prelogits"] {
        let out = dir.join(format!("{name}.npz"));
        semcon_ok([
            "features",
            "-c",
            model_fixture(&format!("{name}.pth")).to_str().unwrap(),
            "--input",
            model_fixture(&format!("{name}_input.npy"))
                .to_str()
                .unwrap(),
            "--layer",
            "all",
            "--out",
            out.to_str().unwrap(),
        ]);
        let got = read_npz(&out);
        let want = taps_of(name);
        for (tap, w) in &want {
            let g = &got[&format!("features_{tap}")];
            assert_close(
                &tensor_f32(g),
                &tensor_f32(w),
                TOL,
                &format!("cli {name} {tap}"),
            );
        }
        // PGD on the family, labels from the fixture
        let labels = dir.join(format!("{name}_labels.npy"));
        read_npz(&model_fixture(&format!("{name}_grad.npz")))["labels"]
            .write_npy(&labels)
            .unwrap();
        let r = semcon_ok([
            "attack",
            "-c",
            model_fixture(&format!("{name}.safetensors"))
                .to_str()
                .unwrap(),
            "--input",
            model_fixture(&format!("{name}_input.npy"))
                .to_str()
                .unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--out",
            dir.join(format!("{name}_adv.npy")).to_str().unwrap(),
        ]);
        assert!(r.stdout.contains("adversarial accuracy"), "{}", r.stdout);
        let adv = Tensor::read_npy(dir.join(format!("{name}_adv.npy"))).unwrap();
        let x = Tensor::read_npy(model_fixture(&format!("{name}_input.npy"))).unwrap();
        let moved = max_abs_diff(&adv, &x);
        assert!(
            moved > 0.0 && moved <= 8.0 / 255.0 + 1e-6,
            "{name}: {moved}"
        );
    }
    // a ViT fine-tunes as a linear probe only: full fine-tuning is refused,
    // naming the flag (the probe itself: tests/transfer.rs)
    let r = semcon([
        "train",
        "--init",
        vit.to_str().unwrap(),
        "-d",
        cifar.to_str().unwrap(),
        "--out",
        dir.join("ft.safetensors").to_str().unwrap(),
    ]);
    expect_error_with(&r, &["ViT", "linear probe only", "--freeze backbone"]);
    assert!(!dir.join("ft.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
