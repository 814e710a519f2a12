//! The cuDNN network on a GPU against PyTorch and against candle's graph.
//! Only in `--features cudnn` builds, and these need a GPU: CI has none, so
//! they run on a GPU machine (`scripts/build_cuda.sh` builds and packs this
//! binary, `scripts/gpu_check.sh` runs it there).

#![cfg(feature = "cudnn")]

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use semcon::metrics::pgd;
use semcon::model::{self, ModelOptions, Tap};

fn gpu() -> Device {
    Device::new_cuda(0).expect("the GPU tests need a GPU")
}

/// Tolerance for strict fp32 (cuDNN's FMA math): |semcon - pytorch| <= TOL * max(1, |pytorch|).
const TOL: f32 = 1e-4;

const MODELS: [&str; 3] = ["resnet18_cifar", "resnet18_imagenet", "resnet50"];

fn load(name: &str) -> model::Model {
    let path = model_fixture(&format!("{name}.safetensors"));
    let m = model::load(&path, &ModelOptions::default(), &gpu()).unwrap();
    assert!(
        m.gpu().unwrap().is_some(),
        "a loaded f32 model on a GPU runs the cuDNN network"
    );
    assert_eq!(m.path_name().unwrap(), "cudnn");
    m
}

fn input(name: &str) -> Tensor {
    Tensor::read_npy(model_fixture(&format!("{name}_input.npy")))
        .unwrap()
        .to_device(&gpu())
        .unwrap()
}

fn host(t: &Tensor) -> Vec<f32> {
    tensor_f32(&t.to_device(&Device::Cpu).unwrap())
}

/// The input gradient by candle's autograd (the graph path).
fn autograd_loss_grad(m: &model::Model, x: &Tensor, y: &Tensor) -> (f32, Vec<f32>) {
    let v = candle_core::Var::from_tensor(x).unwrap();
    let logits = m.features_graph(v.as_tensor(), Tap::Logits).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, y).unwrap();
    let grads = loss.backward().unwrap();
    (
        loss.to_scalar::<f32>().unwrap(),
        host(grads.get(v.as_tensor()).unwrap()),
    )
}

#[test]
fn cudnn_features_match_pytorch_every_tap() {
    for name in MODELS {
        let m = load(name);
        let x = input(name);
        for tap in Tap::ALL {
            let (shape, want) = expected(name, tap);
            let got = m.features(&x, tap).unwrap();
            assert_eq!(got.dims(), &shape[..], "{name} {tap}: shape");
            assert_close(&host(&got), &want, TOL, &format!("{name} {tap} cudnn"));
        }
    }
}

#[test]
fn cudnn_loss_gradient_matches_pytorch() {
    for name in MODELS {
        let m = load(name);
        let f = read_npz(&model_fixture(&format!("{name}_grad.npz")));
        let x = input(name);
        let y = f["labels"]
            .to_dtype(DType::U32)
            .unwrap()
            .to_device(&gpu())
            .unwrap();
        let want_loss = f["loss"].to_scalar::<f32>().unwrap();
        let want_grad = tensor_f32(&f["grad"]);
        let (loss, grad) = m.loss_and_input_grad(&x, &y).unwrap();
        let loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
            "{name}: loss {loss} vs PyTorch {want_loss}"
        );
        assert_close_scaled(
            &host(&grad),
            &want_grad,
            1e-4,
            &format!("{name} cudnn gradient"),
        );
    }
}

/// Odd sizes (stride-2 convolutions and the max pool at their edges), gray
/// input through a colour model, repeated calls with other batch sizes: the
/// cuDNN network equals candle's graph and autograd in float32 on the CPU.
/// (Not candle's graph on the GPU: with the `cudnn` feature its convolutions
/// run under cuDNN's default math, which allows TF32 on this hardware.)
#[test]
fn cudnn_matches_graph_on_odd_sizes_and_gray_input() {
    for (name, (b, c, h, w)) in [
        ("resnet18_imagenet", (3, 3, 37, 37)),
        ("resnet50", (2, 3, 33, 33)),
        ("resnet18_cifar", (5, 3, 13, 13)),
        ("resnet18_cifar", (4, 1, 32, 32)),
        ("resnet18_cifar", (1, 3, 32, 32)),
    ] {
        let m = load(name);
        let path = model_fixture(&format!("{name}.safetensors"));
        let mc = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
        let xc = Tensor::rand(0f32, 1f32, (b, c, h, w), &Device::Cpu).unwrap();
        let x = xc.to_device(&gpu()).unwrap();
        for tap in Tap::ALL {
            let got = m.features(&x, tap).unwrap();
            let want = mc.features_graph(&xc, tap).unwrap();
            assert_close(
                &host(&got),
                &host(&want),
                1e-4,
                &format!("{name} {b}x{c}x{h}x{w} {tap}"),
            );
        }
        let labels: Vec<u32> = (0..b as u32).map(|i| i % 5).collect();
        let y = Tensor::new(labels.as_slice(), &gpu()).unwrap();
        let yc = y.to_device(&Device::Cpu).unwrap();
        let (want_loss, want_grad) = autograd_loss_grad(&mc, &xc, &yc);
        let (loss, grad) = m.loss_and_input_grad(&x, &y).unwrap();
        let loss = loss.to_scalar::<f32>().unwrap();
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
            "{name} {b}x{c}x{h}x{w}: loss {loss} vs {want_loss}"
        );
        assert_close_scaled(
            &host(&grad),
            &want_grad,
            1e-4,
            &format!("{name} {b}x{c}x{h}x{w} gradient"),
        );
    }
}

#[test]
fn cudnn_pgd_matches_pytorch() {
    let f = read_npz(&fixture("metrics/pgd.npz"));
    let m = load("resnet18_cifar");
    let x = f["x"]
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(&gpu())
        .unwrap();
    let y = f["y"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_device(&gpu())
        .unwrap();
    let scalar = |k: &str| {
        f[k].to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let cfg = pgd::PgdConfig {
        eps: scalar("eps") as f32,
        step: scalar("step") as f32,
        iters: scalar("iters") as usize,
        random_start: false,
        seed: 0,
    };
    let out = pgd::pgd(&m, &x, &y, &cfg).unwrap();
    let want_losses: Vec<f32> = tensor_f32(&f["losses"]);
    assert_eq!(out.losses.len(), want_losses.len());
    for (i, (g, w)) in out.losses.iter().zip(&want_losses).enumerate() {
        assert!(
            (g - w).abs() <= 1e-3 * w.abs(),
            "step {i}: loss {g} vs PyTorch {w}"
        );
    }
    let logits = m
        .logits(&out.x_adv)
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap();
    let pred = semcon::metrics::accuracy::predictions(&logits).unwrap();
    let want: Vec<u32> = tensor_f32(&f["adv_pred"])
        .iter()
        .map(|&v| v as u32)
        .collect();
    let same = pred.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(
        same >= 15,
        "only {same}/16 adversarial predictions agree with PyTorch"
    );
    let d = max_abs_diff(
        &out.x_adv.to_device(&Device::Cpu).unwrap(),
        &x.to_device(&Device::Cpu).unwrap(),
    );
    assert!(d <= cfg.eps + 1e-6, "left the eps ball: {d}");
}

#[test]
fn cudnn_bad_labels_and_shapes_are_errors() {
    let m = load("resnet18_cifar");
    let x = input("resnet18_cifar");
    let y = Tensor::new(&[3u32, 1, 4, 10], &gpu()).unwrap();
    let e = m.loss_and_input_grad(&x, &y).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let x2 = Tensor::zeros((2, 2, 32, 32), DType::F32, &gpu()).unwrap();
    let e = m.features(&x2, Tap::Logits).unwrap_err().to_string();
    assert!(e.contains("2 channels"), "{e}");
}

/// k* on the GPU (its row-scan kernel for euclidean and cosine, the host scan
/// for the other metrics) against the float64 numpy/scipy fixtures.
#[test]
fn gpu_kstar_identical_to_float64_reference() {
    use semcon::metrics::kstar::{kstar_with, KstarOptions, Method, Metric};
    for name in ["low", "high", "high32", "offset"] {
        let f = read_npz(&fixture(&format!("kstar/{name}.npz")));
        let x = &f["features"];
        let dim = x.dim(1).unwrap();
        let labels: Vec<u32> = f["labels"]
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect();
        for metric in Metric::ALL {
            let want: Vec<u32> = f[&format!("kstar_{metric}")]
                .to_vec1::<i64>()
                .unwrap()
                .into_iter()
                .map(|v| v as u32)
                .collect();
            for block_rows in [1024, 7] {
                let opts = KstarOptions {
                    metric,
                    method: Method::Blocked,
                    block_rows,
                };
                let got = match x.dtype() {
                    DType::F32 => kstar_with(&tensor_f32(x), dim, &labels, &opts, &gpu()),
                    _ => kstar_with(
                        &x.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                        dim,
                        &labels,
                        &opts,
                        &gpu(),
                    ),
                }
                .unwrap();
                assert_eq!(got, want, "{name} {metric} rows {block_rows}");
            }
        }
    }
}

/// Exact ties (a coarse grid) and the 1-D tie cases: the GPU scan hands near
/// ties to the float64 check and agrees with the kd-tree exactly.
#[test]
fn gpu_kstar_ties() {
    use semcon::metrics::kstar::{kstar_with, KstarOptions, Method, Metric};
    let blocked = |x: &[f64], dim: usize, y: &[u32], metric| {
        let opts = KstarOptions {
            metric,
            method: Method::Blocked,
            block_rows: 512,
        };
        kstar_with(x, dim, y, &opts, &gpu()).unwrap()
    };
    let x = [0.0f64, 1.0, 2.0, 1.0, 3.0];
    assert_eq!(
        blocked(&x, 1, &[0, 0, 0, 1, 1], Metric::Euclidean),
        vec![1; 5]
    );
    let x = [0.0f64, 0.5, 0.9, 1.0];
    assert_eq!(
        blocked(&x, 1, &[0, 0, 0, 1], Metric::Euclidean),
        vec![3, 2, 1, 1]
    );
    assert_eq!(
        blocked(&[2.0; 8], 2, &[0, 1, 0, 1], Metric::Euclidean),
        vec![1; 4]
    );
    assert_eq!(
        blocked(&[0.0, 1.0, 5.0, 7.0], 1, &[3; 4], Metric::Euclidean),
        vec![4; 4]
    );
    let dim = 4;
    let (x, y) = tie_grid(7, 3000, dim, 12);
    let opts = KstarOptions {
        metric: Metric::Euclidean,
        method: Method::KdTree,
        block_rows: 512,
    };
    let want = kstar_with(&x, dim, &y, &opts, &Device::Cpu).unwrap();
    assert_eq!(blocked(&x, dim, &y, Metric::Euclidean), want);
    // cosine on the same grid (no zero rows: shift away from the origin)
    let xc: Vec<f64> = x.iter().map(|v| v + 8.25).collect();
    let cpu = KstarOptions {
        metric: Metric::Cosine,
        method: Method::Blocked,
        block_rows: 512,
    };
    let want = kstar_with(&xc, dim, &y, &cpu, &Device::Cpu).unwrap();
    assert_eq!(blocked(&xc, dim, &y, Metric::Cosine), want);
}

/// The families described as layers (ViT, ConvNeXt, EfficientNet) run as
/// candle's graph on the GPU: every tap and the input gradient against
/// PyTorch. Looser than the cuDNN network's 1e-4: candle's convolutions
/// and matmuls there run under cuDNN's/cuBLAS's default math, which may
/// use TF32 (a 10-bit mantissa) on this hardware, as PyTorch's cuDNN
/// convolutions do by default.
#[test]
fn described_families_match_pytorch_on_the_gpu() {
    const TOL_TF32: f32 = 5e-3;
    for name in [
        "vit_tiny",
        "vit_prelogits",
        "convnext_slim",
        "efficientnet_slim",
    ] {
        let path = model_fixture(&format!("{name}.safetensors"));
        let m = model::load(&path, &ModelOptions::default(), &gpu()).unwrap();
        assert_eq!(m.path_name().unwrap(), "graph");
        let x = input(name);
        let want = read_npz(&model_fixture(&format!("{name}_taps.npz")));
        for tap in m.taps() {
            let w = &want[&tap.to_string()];
            let got = m.features(&x, tap).unwrap();
            assert_eq!(got.dims(), w.dims(), "{name} {tap}");
            assert_close(
                &host(&got),
                &tensor_f32(w),
                TOL_TF32,
                &format!("{name} {tap} gpu"),
            );
        }
        let f = read_npz(&model_fixture(&format!("{name}_grad.npz")));
        let y = f["labels"]
            .to_dtype(DType::U32)
            .unwrap()
            .to_device(&gpu())
            .unwrap();
        let (_, grad) = m.loss_and_input_grad(&x, &y).unwrap();
        assert_close_scaled(
            &host(&grad),
            &tensor_f32(&f["grad"]),
            TOL_TF32,
            &format!("{name} gpu gradient"),
        );
    }
}
