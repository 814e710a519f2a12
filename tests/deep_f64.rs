//! Full-size deep networks against a float64 PyTorch run: resnet101,
//! resnext50_32x4d, vit_b_16, convnext_tiny and efficientnet_b0 with
//! torchvision's exact keys and shapes and weights that a formula gives
//! (tests/fixtures/make_deep_f64.py, which computes the float64 logits;
//! the weights are regenerated here, not committed). semcon's float32
//! logits must sit within 1e-4 * max(1, |logit|) of the float64 ones.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use semcon::model::{self, ModelOptions};
use std::collections::HashMap;
use std::io::Read;

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// u in [0, 1) for value `j` of tensor `name` (24 bits: exact in f32).
fn uniform(seed: u64, j: u64) -> f64 {
    let mut z = seed.wrapping_add(j).wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^= z >> 31;
    (z >> 40) as f64 / (1u64 << 24) as f64
}

/// The formula of make_deep_f64.py, computed in f64, rounded once to f32.
fn value(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let seed = fnv1a64(name);
    let last = name.rsplit('.').next().unwrap();
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let bound = 2.0 * (3.0 / fan_in as f64).sqrt();
    (0..n as u64)
        .map(|j| {
            let u = uniform(seed, j);
            let v = match last {
                "input" => u,
                "running_var" => 0.5 + u,
                "running_mean" => (u - 0.5) / 5.0,
                "layer_scale" => 0.25 + u / 2.0,
                "weight" if shape.len() == 1 => 0.75 + u / 2.0,
                _ if shape.len() == 1 => (u - 0.5) / 5.0,
                "class_token" | "pos_embedding" => u - 0.5,
                _ => (u - 0.5) * bound,
            };
            v as f32
        })
        .collect()
}

fn shapes(file: &str) -> HashMap<String, HashMap<String, Vec<usize>>> {
    let f = std::fs::File::open(model_fixture(file)).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(arch, e)| {
            let s = e["shapes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, s)| {
                    let d = s.as_array().unwrap();
                    (
                        k.clone(),
                        d.iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                    )
                })
                .collect();
            (arch.clone(), s)
        })
        .collect()
}

#[test]
fn deep_networks_match_float64_pytorch() {
    let mut all = shapes("resnet_family_shapes.json.gz");
    all.extend(shapes("families_shapes.json.gz"));
    let refs = read_npz(&model_fixture("deep_f64.npz"));
    let dev = Device::Cpu;
    let x = Tensor::from_vec(value("input", &[2, 3, 224, 224]), (2, 3, 224, 224), &dev).unwrap();
    // the formula agrees with the script's
    assert_eq!(
        tensor_f32(&x.flatten_all().unwrap().narrow(0, 0, 8).unwrap()),
        tensor_f32(&refs["input_head"])
    );
    let dir = tmp_dir("deep_f64");
    for arch in [
        "resnet101",
        "resnext50_32x4d",
        "vit_b_16",
        "convnext_tiny",
        "efficientnet_b0",
    ] {
        let tensors: HashMap<String, Tensor> = all[arch]
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, s)| {
                let t = Tensor::from_vec(value(k, s), s.as_slice(), &dev).unwrap();
                (k.clone(), t)
            })
            .collect();
        let path = dir.join(format!("{arch}.safetensors"));
        candle_core::safetensors::save(&tensors, &path).unwrap();
        drop(tensors);
        let m = model::load(&path, &ModelOptions::default(), &dev).unwrap();
        assert_eq!(m.arch_name(), arch);
        let got = m.logits(&x).unwrap();
        let want = &refs[&format!("{arch}_logits_f64")];
        assert_eq!(got.dims(), want.dims(), "{arch}");
        let want: Vec<f32> = tensor_f64(want).iter().map(|&v| v as f32).collect();
        assert_close(
            &tensor_f32(&got),
            &want,
            1e-4,
            &format!("{arch} vs float64"),
        );
        std::fs::remove_file(&path).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
