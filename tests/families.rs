//! The rest of the ResNet family against torchvision: Wide ResNets and
//! ResNeXts made by torchvision's own classes (tests/fixtures/
//! make_resnet_family.py) give logits, every tap and the input gradient of
//! the cross-entropy; and every full-size torchvision variant's keys, shapes
//! and parameter count are exactly what semcon infers and expects.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use semcon::model::{self, ModelOptions, ResNetConfig, Stem, Tap};
use std::collections::HashMap;
use std::io::Read;

/// Tolerance: |semcon - pytorch| <= TOL * max(1, |pytorch|).
const TOL: f32 = 1e-4;

/// (fixture, expected arch name, groups, fused CPU network available)
const CASES: [(&str, &str, usize, bool); 2] = [
    (
        "wide_resnet_slim",
        "resnet-bottleneck-[1, 1, 1, 1]-1x128d",
        1,
        true,
    ),
    (
        "resnext_slim",
        "resnet-bottleneck-[1, 2, 1, 1]-8x8d",
        8,
        true,
    ),
];

fn input(name: &str) -> Tensor {
    Tensor::read_npy(model_fixture(&format!("{name}_input.npy"))).unwrap()
}

#[test]
fn wide_and_grouped_resnets_match_pytorch() {
    for (name, arch, groups, fused) in CASES {
        for fmt in ["safetensors", "pth"] {
            let path = model_fixture(&format!("{name}.{fmt}"));
            let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
            let what = format!("{name} {fmt}");
            assert_eq!(m.resnet_config().unwrap().arch_name(), arch, "{what}");
            assert_eq!(m.resnet_config().unwrap().groups, groups, "{what}");
            assert_eq!(m.fused().unwrap().is_some(), fused, "{what}");
            let x = input(name);
            for tap in Tap::ALL {
                let (shape, want) = expected(name, tap);
                let got = m.features(&x, tap).unwrap();
                assert_eq!(got.dims(), &shape[..], "{what} {tap}");
                assert_close(&tensor_f32(&got), &want, TOL, &format!("{what} {tap}"));
            }
            assert_loss_and_grad_match(&m, name);
            // candle's graph (a GPU's path for grouped convolutions) too
            let f = read_npz(&model_fixture(&format!("{name}_grad.npz")));
            let y = f["labels"].to_dtype(DType::U32).unwrap();
            let v = candle_core::Var::from_tensor(&x).unwrap();
            let lg = m.features_graph(v.as_tensor(), Tap::Logits).unwrap();
            let (_, want) = expected(name, Tap::Logits);
            assert_close(&tensor_f32(&lg), &want, TOL, &format!("{what} graph"));
            let loss = candle_nn::loss::cross_entropy(&lg, &y).unwrap();
            let grads = loss.backward().unwrap();
            let g = tensor_f32(grads.get(v.as_tensor()).unwrap());
            assert_close_scaled(&g, &tensor_f32(&f["grad"]), 1e-4, &format!("{what} graph"));
        }
    }
}

/// torchvision's full-size variants: name, parameter count and every
/// state-dict tensor's shape, as `make_resnet_family.py` recorded them.
fn torchvision_variants() -> HashMap<String, (usize, HashMap<String, Vec<usize>>)> {
    let f = std::fs::File::open(model_fixture("resnet_family_shapes.json.gz")).unwrap();
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
                (e["params"].as_u64().unwrap() as usize, shapes),
            )
        })
        .collect()
}

#[test]
fn every_full_size_torchvision_variant_is_inferred_exactly() {
    let variants = torchvision_variants();
    assert_eq!(variants.len(), 10);
    for (arch, (params, shapes)) in &variants {
        // num_batches_tracked is an integer buffer, dropped on loading.
        let floats: HashMap<String, Vec<usize>> = shapes
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let cfg = ResNetConfig::infer(&floats, std::path::Path::new(arch)).unwrap();
        assert_eq!(&cfg.arch_name(), arch);
        assert_eq!(cfg.stem, Stem::Imagenet, "{arch}");
        assert_eq!((cfg.in_channels, cfg.num_classes), (3, 1000), "{arch}");
        assert_eq!(cfg.parameter_count(), *params, "{arch}");
        let expected: HashMap<String, Vec<usize>> = cfg.expected_shapes().into_iter().collect();
        assert_eq!(expected, floats, "{arch}: semcon's keys and shapes");
    }
}

/// A full-size ResNeXt-50 (32x4d) with random weights loads from a
/// state dict with torchvision's names and runs.
#[test]
fn full_size_resnext50_loads_and_runs() {
    let variants = torchvision_variants();
    let (_, shapes) = &variants["resnext50_32x4d"];
    let dev = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (k, s) in shapes {
        if k.ends_with("num_batches_tracked") {
            continue;
        }
        let t = if k.ends_with("running_var") {
            Tensor::ones(s.as_slice(), DType::F32, &dev).unwrap()
        } else {
            let fan_in: usize = s.iter().skip(1).product::<usize>().max(1);
            let scale = (1.0 / fan_in as f64).sqrt();
            Tensor::randn(0f32, 1f32, s.as_slice(), &dev)
                .unwrap()
                .affine(scale, 0.0)
                .unwrap()
        };
        tensors.insert(k.clone(), t);
    }
    let dir = tmp_dir("families_full");
    let path = dir.join("resnext50_32x4d.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let m = model::load(&path, &ModelOptions::default(), &dev).unwrap();
    assert_eq!(m.resnet_config().unwrap().arch_name(), "resnext50_32x4d");
    assert_eq!(m.resnet_config().unwrap().groups, 32);
    assert_eq!(m.num_classes(), 1000);
    let x = Tensor::rand(0f32, 1f32, (1, 3, 64, 64), &dev).unwrap();
    let logits = m.logits(&x).unwrap();
    assert_eq!(logits.dims(), &[1, 1000]);
    assert!(tensor_f32(&logits).iter().all(|v| v.is_finite()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A grouped 3x3 weight whose shape cannot be a grouping of the block's
/// width is named in the error with both shapes.
#[test]
fn mis_shaped_grouped_convolution_is_named() {
    let variants = torchvision_variants();
    let (_, shapes) = &variants["resnext50_32x4d"];
    let mut bad: HashMap<String, Vec<usize>> = shapes.clone();
    bad.insert("layer1.0.conv2.weight".into(), vec![128, 5, 3, 3]);
    let e = ResNetConfig::infer(&bad, std::path::Path::new("x.pth"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("layer1.0.conv2.weight") && e.contains("[128, 5, 3, 3]"),
        "{e}"
    );
    assert!(e.contains("[128, 64, 1, 1]"), "{e}");
}

/// `semcon info` names the family, the variant and the parameter count
/// torchvision counts, and says where each setting came from.
#[test]
fn info_reports_variant_parameters_and_sources() {
    let counts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_fixture("resnet_family_params.json")).unwrap(),
    )
    .unwrap();
    for (name, arch, groups, _) in CASES {
        let path = model_fixture(&format!("{name}.pth"));
        let r = semcon_ok(["info", path.to_str().unwrap(), "--format", "json"]);
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(j["family"], "ResNet", "{name}");
        assert_eq!(j["variant"]["value"], arch, "{name}");
        assert_eq!(j["variant"]["source"], "state dict", "{name}");
        assert_eq!(j["parameters"], counts[name], "{name}");
        assert_eq!(j["groups"]["value"], groups, "{name}");
        assert_eq!(j["mean"]["source"], "default", "{name}");
        assert_eq!(
            j["taps"].as_array().unwrap().len(),
            Tap::ALL.len(),
            "{name}"
        );
    }
    // A sidecar's normalisation, and a flag over it.
    let path = model_fixture("resnet18_cifar.safetensors");
    let j: serde_json::Value = serde_json::from_str(
        &semcon_ok(["info", path.to_str().unwrap(), "--format", "json"]).stdout,
    )
    .unwrap();
    assert_eq!(j["variant"]["value"], "resnet18");
    assert_eq!(j["mean"]["source"], "sidecar");
    assert_eq!(j["input_size"]["value"], serde_json::json!([32, 32]));
    let r = semcon_ok([
        "info",
        path.to_str().unwrap(),
        "--mean",
        "0.5",
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["mean"]["source"], "flag");
    assert_eq!(j["mean"]["value"], serde_json::json!([0.5, 0.5, 0.5]));
    assert_eq!(j["std"]["source"], "sidecar");
    // The table names the same things.
    let t = semcon_ok(["info", path.to_str().unwrap()]).stdout;
    assert!(t.contains("resnet18") && t.contains("(sidecar)"), "{t}");
    // Not a checkpoint: one error line.
    let r = semcon(["info", "/nonexistent.pth"]);
    expect_error(&r);
}

/// A state dict of another torchvision family is read as that family (not
/// misread as a ResNet): a truncated one names the family and the first
/// tensor it lacks; keys of no family name every family and the first keys.
#[test]
fn other_families_are_named_not_misread() {
    let dims = |v: &[usize]| v.to_vec();
    type Keys = Vec<(&'static str, Vec<usize>)>;
    let cases: [(&str, &str, Keys); 3] = [
        (
            "Vision Transformer",
            "encoder.pos_embedding",
            vec![
                ("class_token", dims(&[1, 1, 768])),
                ("conv_proj.weight", dims(&[768, 3, 16, 16])),
                ("heads.head.weight", dims(&[1000, 768])),
            ],
        ),
        (
            "EfficientNet",
            "features.1.0.block.0.0.weight",
            vec![
                ("features.0.0.weight", dims(&[32, 3, 3, 3])),
                ("classifier.1.weight", dims(&[1000, 1280])),
            ],
        ),
        (
            "ConvNeXt",
            "features.1.0.block.0.weight",
            vec![
                ("features.0.0.weight", dims(&[96, 3, 4, 4])),
                ("classifier.2.weight", dims(&[1000, 768])),
            ],
        ),
    ];
    for (family, missing, keys) in cases {
        let tensors: HashMap<String, Tensor> = keys
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Tensor::zeros(v.as_slice(), DType::F32, &Device::Cpu).unwrap(),
                )
            })
            .collect();
        let e = model::load::build_described(
            &tensors,
            &Default::default(),
            std::path::Path::new("m.pth"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(missing), "{family}: {e}");
    }
    let shapes: HashMap<String, Vec<usize>> = [("foo.weight".to_string(), vec![3, 3])].into();
    let e = ResNetConfig::infer(&shapes, std::path::Path::new("m.pth"))
        .unwrap_err()
        .to_string();
    for want in ["ResNet", "ViT", "EfficientNet", "ConvNeXt", "foo.weight"] {
        assert!(e.contains(want), "{e}");
    }
}
