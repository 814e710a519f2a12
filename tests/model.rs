//! Models against PyTorch: the fixtures of tests/fixtures/make_models.py
//! (random-init torchvision ResNets, .safetensors and .pth) give logits,
//! penultimate and stage features computed by PyTorch; semcon must match them
//! through the library and through `semcon features`.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use semcon::model::{self, ModelOptions, Stem, Tap};

/// Tolerance: |semcon - pytorch| <= TOL * max(1, |pytorch|).
const TOL: f32 = 1e-4;

struct Case {
    name: &'static str,
    arch: &'static str,
    stem: Stem,
    width: usize,
    classes: usize,
    expansion: usize,
    in_channels: usize,
}

const CASES: [Case; 4] = [
    Case {
        name: "resnet18_cifar",
        arch: "resnet18",
        stem: Stem::Cifar,
        width: 16,
        classes: 10,
        expansion: 1,
        in_channels: 3,
    },
    Case {
        name: "resnet18_imagenet",
        arch: "resnet18",
        stem: Stem::Imagenet,
        width: 16,
        classes: 7,
        expansion: 1,
        in_channels: 3,
    },
    Case {
        name: "resnet50",
        arch: "resnet50",
        stem: Stem::Imagenet,
        width: 8,
        classes: 5,
        expansion: 4,
        in_channels: 3,
    },
    // make_models_extra.py: one input channel, BatchNorm statistics from
    // data (logits that depend on the input).
    Case {
        name: "resnet34_gray",
        arch: "resnet34",
        stem: Stem::Cifar,
        width: 8,
        classes: 4,
        expansion: 1,
        in_channels: 1,
    },
];

const FORMATS: [&str; 2] = ["safetensors", "pth"];

fn input(name: &str) -> Tensor {
    Tensor::read_npy(model_fixture(&format!("{name}_input.npy"))).unwrap()
}

#[test]
fn library_matches_pytorch_every_tap() {
    for c in &CASES {
        for fmt in FORMATS {
            let path = model_fixture(&format!("{}.{fmt}", c.name));
            let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
            let x = input(c.name);
            assert!(
                m.fused().unwrap().is_some(),
                "the CPU runs the fused network"
            );
            for tap in Tap::ALL {
                let (shape, want) = expected(c.name, tap);
                // The CPU's fused network and candle's graph (the GPU's path).
                let fused = m.features(&x, tap).unwrap();
                let graph = m.features_graph(&x, tap).unwrap();
                for (path, got) in [("fused", fused), ("graph", graph)] {
                    assert_eq!(
                        got.dims(),
                        &shape[..],
                        "{} {fmt} {tap} {path}: shape",
                        c.name
                    );
                    assert_close(
                        &tensor_f32(&got),
                        &want,
                        TOL,
                        &format!("{} {fmt} {tap} {path}", c.name),
                    );
                }
            }
        }
    }
}

#[test]
fn inferred_config_and_tap_dims() {
    for c in &CASES {
        for fmt in FORMATS {
            let path = model_fixture(&format!("{}.{fmt}", c.name));
            let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
            let cfg = m.resnet_config().unwrap();
            let what = format!("{} {fmt}", c.name);
            assert_eq!(cfg.arch_name(), c.arch, "{what}");
            assert_eq!(cfg.stem, c.stem, "{what}");
            assert_eq!(cfg.width, c.width, "{what}");
            assert_eq!(cfg.num_classes, c.classes, "{what}");
            assert_eq!(m.num_classes(), c.classes, "{what}");
            assert_eq!(cfg.in_channels, c.in_channels, "{what}");
            assert_eq!(cfg.penultimate_dim(), c.width * 8 * c.expansion, "{what}");
            assert_eq!(m.name, c.name, "{what}");
            let x = input(c.name);
            let n = x.dim(0).unwrap();
            for (i, tap) in [Tap::Layer(1), Tap::Layer(2), Tap::Layer(3), Tap::Layer(4)]
                .into_iter()
                .enumerate()
            {
                let want = c.width * (1 << i) * c.expansion;
                assert_eq!(cfg.stage_channels(i), want, "{what} stage {i}");
                assert_eq!(
                    m.features(&x, tap).unwrap().dims(),
                    &[n, want],
                    "{what} {tap}"
                );
            }
            assert_eq!(
                m.features(&x, Tap::Penultimate).unwrap().dims(),
                &[n, cfg.penultimate_dim()],
                "{what}"
            );
            assert_eq!(m.logits(&x).unwrap().dims(), &[n, c.classes], "{what}");
        }
    }
}

#[test]
fn sidecar_gives_normalisation() {
    let m = model::load(
        &model_fixture("resnet18_cifar.pth"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(m.mean, vec![0.4914, 0.4822, 0.4465]);
    assert_eq!(m.std, vec![0.2470, 0.2435, 0.2616]);
    assert_eq!(m.input_size, Some((32, 32)));
    // without a sidecar: identity normalisation
    let m = model::load(
        &model_fixture("resnet50.pth"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(m.mean, vec![0.0; 3]);
    assert_eq!(m.std, vec![1.0; 3]);
}

fn sidecar_norm() -> (Vec<f32>, Vec<f32>) {
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model_fixture("resnet18_cifar.json")).unwrap(),
    )
    .unwrap();
    let v = |k: &str| {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect::<Vec<_>>()
    };
    (v("mean"), v("std"))
}

/// The resnet18_cifar sidecar's normalisation as explicit options (for the
/// container variants, which have no sidecar of their own).
fn sidecar_opts() -> ModelOptions {
    let (mean, std) = sidecar_norm();
    ModelOptions {
        mean: Some(mean),
        std: Some(std),
        ..Default::default()
    }
}

#[test]
fn nested_module_prefixed_pth_with_norm_options() {
    let path = model_fixture("resnet18_cifar_nested.pth");
    let opts = sidecar_opts();
    let m = model::load(&path, &opts, &Device::Cpu).unwrap();
    assert_eq!(m.resnet_config().unwrap().arch_name(), "resnet18");
    assert_eq!(m.resnet_config().unwrap().stem, Stem::Cifar);
    let x = input("resnet18_cifar");
    for tap in Tap::ALL {
        let (_, want) = expected("resnet18_cifar", tap);
        assert_close(
            &tensor_f32(&m.features(&x, tap).unwrap()),
            &want,
            TOL,
            &format!("nested {tap}"),
        );
    }
    // the normalisation matters: without it the logits differ
    let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
    let (_, want) = expected("resnet18_cifar", Tap::Logits);
    assert!(max_rel_diff(&tensor_f32(&m.logits(&x).unwrap()), &want) > 1e-2);
}

/// A training script's checkpoint: the state dict under 'model' beside an
/// optimizer state (torch.save of a dict; make_models.py containers).
#[test]
fn state_dict_under_model_key() {
    let path = model_fixture("resnet18_cifar_model_key.pth");
    let opts = sidecar_opts();
    let m = model::load(&path, &opts, &Device::Cpu).unwrap();
    let x = input("resnet18_cifar");
    let (_, want) = expected("resnet18_cifar", Tap::Logits);
    assert_close(
        &tensor_f32(&m.logits(&x).unwrap()),
        &want,
        TOL,
        "model-key logits",
    );
}

/// torch.save names the zip entries after the file it writes ("NAME/data.pkl"):
/// with a 21-character NAME the first central-directory entry is as long as the
/// zip64 end records that follow the directory, which the zip reader under
/// candle mistakes for the directory start. The nested fixture has such a name,
/// so the tests above cover semcon's workaround.
#[test]
fn pth_with_21_character_archive_name_loads() {
    let path = model_fixture("resnet18_cifar_nested.pth");
    let bytes = std::fs::read(&path).unwrap();
    let first = b"resnet18_cifar_nested/data.pkl";
    assert_eq!(first.len(), 30);
    assert!(bytes.windows(first.len()).any(|w| w == first));
    let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
    assert_eq!(m.resnet_config().unwrap().num_classes, 10);
    // and the same data under a plain name with the same archive layout
    let dir = tmp_dir("model_zip_name");
    let copy = dir.join("other.pth");
    std::fs::copy(&path, &copy).unwrap();
    assert!(model::load(&copy, &ModelOptions::default(), &Device::Cpu).is_ok());
}

fn cli_features(
    checkpoint: &str,
    input_of: &str,
    tap: &str,
    extra: &[String],
    dir: &std::path::Path,
) -> Vec<f32> {
    let out = dir.join(format!("{checkpoint}_{tap}.npz"));
    let mut args: Vec<String> = vec![
        "features".into(),
        "--checkpoint".into(),
        model_fixture(checkpoint).display().to_string(),
        "--input".into(),
        model_fixture(&format!("{input_of}_input.npy"))
            .display()
            .to_string(),
        "--layer".into(),
        tap.into(),
        "--out".into(),
        out.display().to_string(),
        "--device".into(),
        "cpu".into(),
    ];
    args.extend_from_slice(extra);
    let r = semcon_ok(&args);
    // candle prints "skipping: ..." for non-tensor pickle entries it is asked to read
    assert!(
        !r.stderr.contains("skipping"),
        "noise on stderr: {}",
        r.stderr
    );
    let arrays = read_npz(&out);
    assert!(!arrays.contains_key("labels"), "no labels for --input");
    let f = &arrays["features"];
    assert_eq!(f.rank(), 2);
    tensor_f32(f)
}

#[test]
fn cli_features_match_pytorch() {
    let dir = tmp_dir("model_cli_features");
    for c in &CASES {
        for fmt in FORMATS {
            for tap in ["logits", "penultimate"] {
                let t: Tap = tap.parse().unwrap();
                let (_, want) = expected(c.name, t);
                let got = cli_features(&format!("{}.{fmt}", c.name), c.name, tap, &[], &dir);
                assert_close(&got, &want, TOL, &format!("cli {} {fmt} {tap}", c.name));
            }
        }
    }
}

#[test]
fn cli_stage_taps_match_pytorch() {
    let dir = tmp_dir("model_cli_stages");
    for tap in ["layer1", "layer2", "layer3", "layer4"] {
        let (_, want) = expected("resnet50", tap.parse().unwrap());
        let got = cli_features("resnet50.safetensors", "resnet50", tap, &[], &dir);
        assert_close(&got, &want, TOL, &format!("cli resnet50 {tap}"));
    }
}

#[test]
fn cli_nested_pth_with_mean_std_flags() {
    let dir = tmp_dir("model_cli_nested");
    let (mean, std) = sidecar_norm();
    let join = |v: &[f32]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let extra = vec![
        "--mean".to_string(),
        join(&mean),
        "--std".to_string(),
        join(&std),
    ];
    for tap in ["logits", "penultimate"] {
        let (_, want) = expected("resnet18_cifar", tap.parse().unwrap());
        let got = cli_features(
            "resnet18_cifar_nested.pth",
            "resnet18_cifar",
            tap,
            &extra,
            &dir,
        );
        assert_close(&got, &want, TOL, &format!("cli nested {tap}"));
    }
}

#[test]
fn tap_names_parse() {
    for tap in Tap::ALL {
        assert_eq!(tap.to_string().parse::<Tap>().unwrap(), tap);
    }
    assert_eq!("avgpool".parse::<Tap>().unwrap(), Tap::Penultimate);
    assert_eq!("stage7".parse::<Tap>().unwrap(), Tap::Stage(7));
    assert_eq!("block12".parse::<Tap>().unwrap(), Tap::Block(12));
    for bad in ["layer0", "layer", "fc", "block256"] {
        let e = bad.parse::<Tap>().unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains("penultimate"), "{e}");
    }
    // a name of another family's layer parses, and the model refuses it
    let m = model::load(
        &model_fixture("resnet18_cifar.safetensors"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let x = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    for t in [Tap::Layer(5), Tap::Stage(1), Tap::Block(1)] {
        let e = m.features(&x, t).unwrap_err().to_string();
        assert!(e.contains(&t.to_string()) && e.contains("layer4"), "{e}");
    }
}

#[test]
fn empty_images_are_an_error_not_a_panic() {
    let m = model::load(
        &model_fixture("resnet50.safetensors"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let x = Tensor::zeros((1, 3, 0, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = m.features(&x, Tap::Logits).unwrap_err().to_string();
    assert!(e.contains("0x4"), "{e}");
    // gray images are replicated to the model's 3 channels
    let x = Tensor::full(0.5f32, (2, 1, 8, 8), &Device::Cpu).unwrap();
    let x3 = Tensor::full(0.5f32, (2, 3, 8, 8), &Device::Cpu).unwrap();
    assert_close(
        &tensor_f32(&m.logits(&x).unwrap()),
        &tensor_f32(&m.logits(&x3).unwrap()),
        1e-6,
        "gray = replicated RGB",
    );
    let x2 = Tensor::zeros((1, 2, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = m.features(&x2, Tap::Logits).unwrap_err().to_string();
    assert!(e.contains("2 channels"), "{e}");
}

/// The input gradient of the mean cross-entropy by candle's autograd.
fn autograd_loss_grad(m: &model::Model, x: &Tensor, y: &Tensor) -> (f32, Vec<f32>) {
    let v = candle_core::Var::from_tensor(x).unwrap();
    let loss = candle_nn::loss::cross_entropy(&m.logits(v.as_tensor()).unwrap(), y).unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(v.as_tensor()).unwrap();
    (loss.to_scalar::<f32>().unwrap(), tensor_f32(g))
}

/// The fused CPU network (PGD's forward and backward pass on the CPU): logits
/// and the cross-entropy's input gradient against PyTorch (make_grads.py) for
/// both stems and both block kinds; candle's autograd against the same.
#[test]
fn fused_network_loss_gradient_matches_pytorch() {
    for c in &CASES {
        let path = model_fixture(&format!("{}.safetensors", c.name));
        let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
        let f = read_npz(&model_fixture(&format!("{}_grad.npz", c.name)));
        let x = input(c.name);
        let dims = x.dims4().unwrap();
        let labels: Vec<u32> = f["labels"]
            .to_dtype(candle_core::DType::U32)
            .unwrap()
            .to_vec1()
            .unwrap();
        let want_loss = f["loss"].to_scalar::<f32>().unwrap();
        let want_grad = tensor_f32(&f["grad"]);
        let net = m.fused().unwrap().expect("CPU f32 model has a fused form");

        let (_, want_logits) = expected(c.name, Tap::Logits);
        assert_close(
            &net.logits(&tensor_f32(&x), dims).unwrap(),
            &want_logits,
            TOL,
            &format!("{} fused logits", c.name),
        );

        let y = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
        let fused = net.loss_and_grad(&tensor_f32(&x), dims, &labels).unwrap();
        let graph = autograd_loss_grad(&m, &x, &y);
        for (path, (loss, grad)) in [("fused", fused), ("autograd", graph)] {
            let what = format!("{} {path}", c.name);
            assert!(
                (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
                "{what}: loss {loss} vs PyTorch {want_loss}"
            );
            assert_close_scaled(&grad, &want_grad, 1e-4, &format!("{what} gradient"));
        }
    }
}

/// Gray images through a colour model: the fused gradient sums over the
/// replicated channels exactly as candle's autograd does; bad shapes and
/// labels are errors.
#[test]
fn fused_network_gray_input_and_bad_input() {
    let path = model_fixture("resnet18_cifar.safetensors");
    let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
    let net = m.fused().unwrap().unwrap();
    let x = input("resnet18_cifar").mean_keepdim(1).unwrap();
    let dims = x.dims4().unwrap();
    let labels = [3u32, 1, 4, 1];
    let y = Tensor::new(&labels, &Device::Cpu).unwrap();
    let (want_loss, want_grad) = autograd_loss_grad(&m, &x, &y);
    let (loss, grad) = net.loss_and_grad(&tensor_f32(&x), dims, &labels).unwrap();
    assert!((loss - want_loss).abs() <= 1e-5 * want_loss.abs());
    assert_close_scaled(&grad, &want_grad, 1e-4, "gray fused gradient");

    let xs = tensor_f32(&x);
    assert!(
        net.loss_and_grad(&xs, dims, &[3, 1, 4]).is_err(),
        "label count"
    );
    assert!(
        net.loss_and_grad(&xs, dims, &[3, 1, 4, 10]).is_err(),
        "label range"
    );
    assert!(net.logits(&xs, (4, 2, 32, 32)).is_err(), "channels");
}

/// Odd image sizes (the stride-2 convolutions and the max pool at their
/// edges): the fused network's features and gradient equal candle's graph.
#[test]
fn fused_network_matches_graph_on_odd_sizes() {
    for (name, (h, w)) in [
        ("resnet18_imagenet", (37, 41)),
        ("resnet50", (33, 30)),
        ("resnet18_cifar", (13, 9)),
    ] {
        let path = model_fixture(&format!("{name}.safetensors"));
        let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
        let x = Tensor::rand(0f32, 1f32, (3, 3, h, w), &Device::Cpu).unwrap();
        for tap in Tap::ALL {
            let f = m.features(&x, tap).unwrap();
            let g = m.features_graph(&x, tap).unwrap();
            assert_close(
                &tensor_f32(&f),
                &tensor_f32(&g),
                1e-4,
                &format!("{name} {h}x{w} {tap}"),
            );
        }
        let labels = [0u32, 1, 2];
        let y = Tensor::new(&labels, &Device::Cpu).unwrap();
        let (want_loss, want_grad) = autograd_loss_grad(&m, &x, &y);
        let net = m.fused().unwrap().unwrap();
        let (loss, grad) = net
            .loss_and_grad(&tensor_f32(&x), x.dims4().unwrap(), &labels)
            .unwrap();
        assert!(
            (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
            "{name}: loss {loss} vs {want_loss}"
        );
        assert_close_scaled(&grad, &want_grad, 1e-4, &format!("{name} {h}x{w} gradient"));
    }
}

/// `Model::loss_and_input_grad` (what `semcon bench` times; on a GPU the
/// cuDNN network, tests/gpu.rs) on the CPU's fused path against PyTorch, and
/// `Model::one_hot` (the GPU path's labels) with its range check.
#[test]
fn model_loss_and_input_grad_matches_pytorch() {
    for c in &CASES {
        let path = model_fixture(&format!("{}.safetensors", c.name));
        let m = model::load(&path, &ModelOptions::default(), &Device::Cpu).unwrap();
        assert_loss_and_grad_match(&m, c.name);
        assert_eq!(m.path_name().unwrap(), "fused");
    }
    let m = model::load(
        &model_fixture("resnet18_cifar.safetensors"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let oh = m
        .one_hot(&Tensor::new(&[3u32, 0, 9], &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(oh.dims(), &[3, 10]);
    let v = tensor_f32(&oh);
    assert_eq!(v.iter().sum::<f32>(), 3.0);
    assert_eq!((v[3], v[10], v[29]), (1.0, 1.0, 1.0));
    let e = m
        .one_hot(&Tensor::new(&[3u32, 10], &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 10 is out of range"), "{e}");
}

/// The other shapes .pth files come in (make_models.py formats): a PyTorch
/// Lightning checkpoint (`.ckpt`, state dict under 'state_dict' with the
/// module's `model.` prefix) loads to the same weights as the plain state
/// dict; the legacy non-zip format and a pickled model object are clear
/// errors that say how to re-save them.
#[test]
fn lightning_legacy_and_pickled_module_checkpoints() {
    let opts = ModelOptions::default();
    let plain = model::load(&model_fixture("tiny.pth"), &opts, &Device::Cpu).unwrap();
    let lightning =
        model::load(&model_fixture("tiny_lightning.ckpt"), &opts, &Device::Cpu).unwrap();
    let x = input("resnet18_cifar");
    let (a, b) = (
        tensor_f32(&plain.logits(&x).unwrap()),
        tensor_f32(&lightning.logits(&x).unwrap()),
    );
    assert_eq!(a.len(), 4 * 3);
    assert_eq!(a, b, "Lightning checkpoint logits");
    for (file, needles) in [
        (
            "tiny_legacy.pth",
            ["legacy torch.save format", "torch.save(torch.load("],
        ),
        (
            "tiny_module.pth",
            ["pickled model object", "model.state_dict()"],
        ),
    ] {
        let e = model::load(&model_fixture(file), &opts, &Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("{file} loaded"))
            .to_string();
        for n in needles {
            assert!(e.contains(n) && e.contains(file), "{file}: {e}");
        }
    }
}

/// Wrapper prefixes, alone and combined (DataParallel `module.`,
/// torch.compile `_orig_mod.`, any `NAME.`), load to the plain weights.
#[test]
fn wrapper_prefixes_are_stripped() {
    let dir = tmp_dir("model_prefixes");
    let opts = ModelOptions::default();
    let plain_path = model_fixture("tiny.pth");
    let plain = semcon::model::checkpoint::read_state_dict(&plain_path).unwrap();
    let x = input("resnet18_cifar");
    let want = tensor_f32(
        &model::load(&plain_path, &opts, &Device::Cpu)
            .unwrap()
            .logits(&x)
            .unwrap(),
    );
    for prefix in ["module.", "_orig_mod.", "module._orig_mod.", "net."] {
        let renamed: std::collections::HashMap<String, Tensor> = plain
            .iter()
            .map(|(k, t)| (format!("{prefix}{k}"), t.clone()))
            .collect();
        let p = dir.join(format!("{}safetensors", prefix.replace('_', "")));
        candle_core::safetensors::save(&renamed, &p).unwrap();
        let m = model::load(&p, &opts, &Device::Cpu).unwrap();
        assert_eq!(tensor_f32(&m.logits(&x).unwrap()), want, "prefix {prefix}");
    }
}

/// A .pth whose pickle would call os.system (make_models.py hostile) is
/// refused naming the global, and nothing is run; every other .pth fixture
/// (plain, nested, Lightning, optimizer state) passes the same check.
#[test]
fn pickle_calling_os_system_is_refused_without_running_it() {
    let marker = std::path::Path::new("/tmp/semcon-pickle-ran");
    let _ = std::fs::remove_file(marker);
    let path = model_fixture("tiny_os_system.pth");
    let e = model::load(&path, &ModelOptions::default(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("system") && e.contains("refused"), "{e}");
    assert!(e.contains("tiny_os_system.pth"), "{e}");
    let r = semcon(["info", path.to_str().unwrap()]);
    let line = expect_error(&r);
    assert!(line.contains("system"), "{line}");
    assert!(!marker.exists(), "the pickle's command ran");
    for ok in [
        "tiny.pth",
        "tiny_lightning.ckpt",
        "resnet18_cifar_nested.pth",
        "resnet18_cifar_model_key.pth",
        "resnext_slim.pth",
    ] {
        model::load(&model_fixture(ok), &ModelOptions::default(), &Device::Cpu)
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}
