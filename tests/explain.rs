//! Explanations (`src/explain/`, `semcon explain`) against Captum
//! (tests/fixtures/make_explain.py): saliency (for the label and for the
//! prediction), Integrated Gradients with its convergence delta, GradCAM
//! before and after upsampling, for a ResNet, a ConvNeXt, an EfficientNet
//! and a ViT (GradCAM refused for it, by name); the quadrature's nodes.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{
    expect_error_with, fixture, model_fixture, read_npz, semcon, semcon_ok, tensor_f32, tmp_dir,
};
use semcon::explain::{self, Method, Options, Target};
use semcon::model::{load, ModelOptions, Tap};
use std::collections::HashMap;

fn captum() -> HashMap<String, Tensor> {
    Tensor::read_npz(fixture("explain").join("captum.npz"))
        .unwrap()
        .into_iter()
        .collect()
}

/// max |diff| <= tol * max(1, max |want|) over the whole array.
fn close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (tensor_f32(got), tensor_f32(want));
    let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = g
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max |diff| {worst} (scale {scale})"
    );
    assert!(w.iter().any(|v| *v != 0.0), "{what}: reference is all zero");
}

fn model(name: &str) -> semcon::model::Model {
    let opts = ModelOptions {
        mean: Some(vec![0.5; 3]),
        std: Some(vec![0.25; 3]),
        ..Default::default()
    };
    load(
        &model_fixture(&format!("{name}.safetensors")),
        &opts,
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn quadrature_is_captums() {
    let f = captum();
    let (t, w) = explain::quadrature::gauss_legendre(50);
    let alphas: Vec<f64> = f["gl_alphas"].to_vec1().unwrap();
    let steps: Vec<f64> = f["gl_steps"].to_vec1().unwrap();
    for i in 0..50 {
        assert!((0.5 * (1.0 + t[i]) - alphas[i]).abs() < 1e-14, "alpha {i}");
        assert!((0.5 * w[i] - steps[i]).abs() < 1e-14, "step size {i}");
    }
}

#[test]
fn attributions_match_captum() {
    let f = captum();
    for name in [
        "resnet18_cifar",
        "convnext_slim",
        "efficientnet_slim",
        "vit_tiny",
    ] {
        let m = model(name);
        if name == "resnet18_cifar" {
            // saliency and IG of a ResNet go through the fused CPU network
            assert_eq!(m.path_name().unwrap(), "fused");
        }
        let x = &f[&format!("{name}_x")];
        let labels: Vec<u32> = tensor_f32(&f[&format!("{name}_y")])
            .iter()
            .map(|v| *v as u32)
            .collect();
        let want_pred: Vec<u32> = tensor_f32(&f[&format!("{name}_pred")])
            .iter()
            .map(|v| *v as u32)
            .collect();
        let key = |k: &str| &f[&format!("{name}_{k}")];
        let opts = Options::default();
        let s = explain::explain(&m, x, &labels, Method::Saliency, &opts).unwrap();
        assert_eq!(s.preds, want_pred, "{name}: predictions");
        close(&s.attr, key("saliency"), 1e-4, &format!("{name} saliency"));
        let t = explain::targets(&m, Target::Pred, &labels, &s.preds).unwrap();
        let sp = explain::explain(&m, x, &t, Method::Saliency, &opts).unwrap();
        close(
            &sp.attr,
            key("saliency_pred"),
            1e-4,
            &format!("{name} saliency of the prediction"),
        );
        let ig = explain::explain(&m, x, &labels, Method::Ig, &opts).unwrap();
        close(&ig.attr, key("ig"), 1e-4, &format!("{name} IG"));
        let delta = Tensor::new(ig.delta.clone().unwrap(), &Device::Cpu).unwrap();
        // the delta is a difference of nearly equal sums: absolute tolerance
        for (g, w) in tensor_f32(&delta).iter().zip(tensor_f32(key("ig_delta"))) {
            assert!((g - w).abs() < 1e-3, "{name} IG delta {g} vs {w}");
        }
        let cam = explain::explain(&m, x, &t, Method::Gradcam, &opts);
        if name == "vit_tiny" {
            let e = cam.unwrap_err().to_string();
            assert!(
                e.contains("GradCAM needs a convolutional stage") && e.contains("block2"),
                "{e}"
            );
            continue;
        }
        let cam = cam.unwrap();
        close(
            cam.coarse.as_ref().unwrap(),
            key("gradcam_coarse"),
            1e-4,
            &format!("{name} GradCAM"),
        );
        close(
            &cam.attr,
            key("gradcam"),
            1e-4,
            &format!("{name} GradCAM upsampled"),
        );
        assert!(matches!(cam.layer, Some(Tap::Layer(4) | Tap::Stage(_))));
    }
}

/// `semcon explain` with two models of different families on given arrays:
/// the .npz holds every model's attributions stacked (the ResNet's equal to
/// Captum's), the labels, predictions and explained logits; the summary
/// names each model; what cannot be explained is refused in one line.
#[test]
fn explain_command_writes_every_models_attributions() {
    let f = captum();
    let dir = tmp_dir("explain_cmd");
    let x = &f["resnet18_cifar_x"];
    let xp = dir.join("x.npy");
    let yp = dir.join("y.npy");
    x.write_npy(&xp).unwrap();
    f["resnet18_cifar_y"].write_npy(&yp).unwrap();
    let out = dir.join("sal.npz");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "explain",
            "-c",
            model_fixture("resnet18_cifar.safetensors")
                .to_str()
                .unwrap(),
            "-c",
            model_fixture("convnext_slim.safetensors").to_str().unwrap(),
            "--mean",
            "0.5,0.5,0.5",
            "--std",
            "0.25,0.25,0.25",
            "--input",
            xp.to_str().unwrap(),
            "--labels",
            yp.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let r = semcon_ok(args(&[
        "--method",
        "saliency",
        "--out",
        out.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["models"][0]["model"], "resnet18_cifar", "{j}");
    assert_eq!(j["models"][1]["model"], "convnext_slim", "{j}");
    let got: HashMap<String, Tensor> = common::read_npz(&out);
    let attr = &got["attributions"];
    assert_eq!(attr.dims(), &[2, 2, 3, 32, 32]);
    close(
        &attr.get(0).unwrap(),
        &f["resnet18_cifar_saliency"],
        1e-4,
        "explain's ResNet saliency",
    );
    // the ConvNeXt's row is the library's explanation of the same images
    let m = model("convnext_slim");
    let labels: Vec<u32> = tensor_f32(&f["resnet18_cifar_y"])
        .iter()
        .map(|v| *v as u32)
        .collect();
    let e = explain::explain(&m, x, &labels, Method::Saliency, &Options::default()).unwrap();
    close(
        &attr.get(1).unwrap(),
        &e.attr,
        1e-6,
        "explain's ConvNeXt saliency",
    );
    assert_eq!(got["labels"].to_vec1::<i64>().unwrap(), vec![0, 1]);
    assert_eq!(got["preds"].dims(), &[2, 2]);
    assert_eq!(got["logit"].dims(), &[2, 2]);
    // GradCAM: each model's last stage; the coarse maps differ in size
    let cam = dir.join("cam.npz");
    let r = semcon_ok(args(&[
        "--method",
        "gradcam",
        "--out",
        cam.to_str().unwrap(),
    ]));
    assert!(
        r.stdout.contains("layer layer4") && r.stdout.contains("layer stage3"),
        "{}",
        r.stdout
    );
    let got: HashMap<String, Tensor> = common::read_npz(&cam);
    assert_eq!(got["attributions"].dims(), &[2, 2, 1, 32, 32]);
    // the figure: the image column and one heat-map column per model,
    // rows of 128 px cells; the first cell is the image itself, scaled
    let png = dir.join("cam.png");
    semcon_ok(args(&[
        "--method",
        "gradcam",
        "--out",
        png.to_str().unwrap(),
    ]));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(
        img.width(),
        10 + 3 * 138 + 74,
        "three columns and a colour bar"
    );
    assert_eq!(img.height(), 50 + 2 * 158 + 10, "two rows");
    let x0: Vec<f32> = tensor_f32(&x.get(0).unwrap());
    for (px, py) in [(0u32, 0u32), (31, 31), (5, 20)] {
        let p = img.get_pixel(10 + px * 4 + 1, 50 + py * 4 + 1);
        for c in 0..3 {
            let want = (x0[c * 1024 + (py * 32 + px) as usize] * 255.0).round() as i32;
            assert!((p[c] as i32 - want).abs() <= 1, "image pixel ({px},{py})");
        }
    }
    assert!(!png.with_extension("png.tmp").exists());
    // refusals
    let vit = model_fixture("vit_tiny.safetensors");
    let bad = dir.join("bad.npz");
    let r = semcon([
        "explain",
        "-c",
        vit.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "--labels",
        yp.to_str().unwrap(),
        "--method",
        "gradcam",
        "--out",
        bad.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["GradCAM needs a convolutional stage", "vit_tiny"]);
    let r = semcon(args(&[
        "--method",
        "ig",
        "--layer",
        "layer4",
        "--out",
        bad.to_str().unwrap(),
    ]));
    expect_error_with(&r, &["--layer", "gradcam"]);
    let r = semcon(args(&[
        "--method",
        "gradcam",
        "--layer",
        "layer9",
        "--out",
        bad.to_str().unwrap(),
    ]));
    expect_error_with(&r, &["layer9"]);
    let r = semcon(args(&[
        "--method",
        "saliency",
        "--out",
        dir.join("a.txt").to_str().unwrap(),
    ]));
    expect_error_with(&r, &[".npz"]);
    let y3 = dir.join("y3.npy");
    Tensor::new(&[0i64, 1, 2], &Device::Cpu)
        .unwrap()
        .write_npy(&y3)
        .unwrap();
    let mut a3 = args(&["--method", "saliency", "--out", bad.to_str().unwrap()]);
    let i = a3.iter().position(|s| s == "--labels").unwrap();
    a3[i + 1] = y3.display().to_string();
    expect_error_with(&semcon(a3), &["has 3 labels but", "has 2 images"]);
    assert!(!bad.exists(), "a refused run wrote its output");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The numbers for explanations: Captum's `sensitivity_max` given the same
/// noise; RISE's deletion AUC against the fixture's loop; the background
/// share on a colour-shift image; the seeded default perturbation repeats.
#[test]
fn explanation_scores_match_the_references() {
    use semcon::explain::scores;
    let f = captum();
    let m = model("resnet18_cifar");
    let x = &f["resnet18_cifar_x"];
    let y = [0u32, 1];
    let noise = &f["resnet18_cifar_sens_noise"];
    let copies: Vec<Tensor> = (0..3)
        .map(|d| {
            let rows: Vec<Tensor> = (0..2).map(|i| noise.get(i * 3 + d).unwrap()).collect();
            (x + Tensor::stack(&rows, 0).unwrap()).unwrap()
        })
        .collect();
    let opts = Options::default();
    let got = scores::sensitivity_max_with(&m, x, &y, Method::Saliency, &opts, &copies).unwrap();
    let want = tensor_f32(&f["resnet18_cifar_sens_saliency"]);
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-4 * w.max(1.0),
            "sensitivity_max {g} vs Captum {w}"
        );
    }
    let a = scores::sensitivity_max(&m, x, &y, Method::Saliency, &opts, 3, 0.02, 7).unwrap();
    let b = scores::sensitivity_max(&m, x, &y, Method::Saliency, &opts, 3, 0.02, 7).unwrap();
    assert_eq!(a, b, "seeded");
    assert!(a.iter().all(|v| *v > 0.0 && v.is_finite()));
    let sal = &f["resnet18_cifar_saliency"];
    let got = scores::deletion_auc(&m, x, &y, sal, 32).unwrap();
    let want = tensor_f32(&f["resnet18_cifar_deletion_auc"]);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "deletion AUC {g} vs reference {w}");
    }
    // background share: a 2x2 image whose first two pixels are background
    let attr = Tensor::new(&[[[[1f32, -1.0], [2.0, 0.0]]]], &Device::Cpu).unwrap();
    let share = scores::background_share(&attr, &[vec![true, true, false, false]]).unwrap();
    assert!((share[0] - 0.5).abs() < 1e-6, "{share:?}");
}

/// `eval --explain`: each model's explanation numbers in the JSON, equal to
/// the library's on the same images, with the background share on the
/// colour-shift set; the table says them too.
#[test]
fn eval_reports_explanation_numbers() {
    let tiny = fixture("train").join("tiny.safetensors");
    let args = |format: &str| {
        vec![
            "eval".to_string(),
            "-c".into(),
            tiny.display().to_string(),
            "-d".into(),
            "builtin:fashion-mnist:colour".into(),
            "--samples".into(),
            "6".into(),
            "--perturb".into(),
            "none".into(),
            "--explain".into(),
            "gradcam".into(),
            "--explain-samples".into(),
            "3".into(),
            "--format".into(),
            format.into(),
        ]
    };
    let r = semcon_ok(args("json"));
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let e = &j["models"][0]["explanations"];
    assert_eq!(e["method"], "gradcam", "{e}");
    assert_eq!(e["samples"], 3);
    assert_eq!(e["colour_sensitivity"].as_array().unwrap().len(), 16);
    let share = e["background_share"].as_f64().expect("colour-shift set");
    assert!((0.0..=1.0).contains(&share), "{share}");
    let auc = e["deletion_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "{auc}");
    // the library on the same images gives the same numbers
    let m = load(&tiny, &ModelOptions::default(), &Device::Cpu).unwrap();
    let set = semcon::session::DataChoice {
        dataset: Some("builtin:fashion-mnist:colour".into()),
        samples: Some(6),
        ..Default::default()
    }
    .load(None)
    .unwrap();
    let rep =
        explain::scores::report(&m, &set, Method::Gradcam, &Options::default(), 3, 0).unwrap();
    assert!(
        (rep.deletion_auc - auc).abs() < 1e-6,
        "{} vs {auc}",
        rep.deletion_auc
    );
    assert!((rep.background_share.unwrap() - share).abs() < 1e-6);
    assert!((rep.sensitivity_max_mean - e["sensitivity_max_mean"].as_f64().unwrap()).abs() < 1e-6);
    let t = semcon_ok(args("table"));
    assert!(
        t.stdout
            .contains("GradCAM of 3 images: sensitivity_max mean")
            && t.stdout.contains("background share")
            && t.stdout.contains("hue 0.1"),
        "{}",
        t.stdout
    );
}

/// LIME against the `lime` package given the masks it drew: every
/// superpixel's coefficient and the intercept of its weighted ridge
/// regression, on a trained model whose probabilities move.
#[test]
fn lime_matches_the_lime_package() {
    use semcon::explain::lime;
    let f = captum();
    let m = load(
        &fixture("train").join("tiny.safetensors"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let x = &f["lime_x"];
    let y: Vec<u32> = tensor_f32(&f["lime_y"]).iter().map(|v| *v as u32).collect();
    let (segments, n_seg) = lime::grid_segments(28, 28, 4);
    assert_eq!(n_seg, 49);
    let data = &f["lime_data"]; // [2, 200, 49] u8
    let coefs = &f["lime_coef"];
    let inter = tensor_f32(&f["lime_intercept"]);
    for i in 0..2 {
        let rows: Vec<Vec<bool>> = data
            .get(i)
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec2::<u32>()
            .unwrap()
            .iter()
            .map(|r| r.iter().map(|&v| v == 1).collect())
            .collect();
        assert!(rows[0].iter().all(|&b| b), "lime's first mask is all on");
        let (coef, b) = lime::explain_with(
            &m,
            &x.narrow(0, i, 1).unwrap(),
            y[i],
            &segments,
            n_seg,
            &rows,
            0.25,
        )
        .unwrap();
        let want: Vec<f32> = tensor_f32(&coefs.get(i).unwrap());
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(scale > 1e-3, "the reference barely moves: {scale}");
        for (s, (g, w)) in coef.iter().zip(&want).enumerate() {
            assert!(
                (*g as f32 - w).abs() <= 1e-3 * scale,
                "sample {i} superpixel {s}: {g} vs lime {w}"
            );
        }
        assert!(
            (b as f32 - inter[i]).abs() < 1e-5,
            "intercept {b} vs {}",
            inter[i]
        );
    }
    // the method as explain runs it: [N, 1, H, W], seeded, constant per superpixel
    let a = explain::explain(&m, x, &y, Method::Lime, &Options::default()).unwrap();
    let b = explain::explain(&m, x, &y, Method::Lime, &Options::default()).unwrap();
    assert_eq!(a.attr.dims(), &[2, 1, 28, 28]);
    assert_eq!(tensor_f32(&a.attr), tensor_f32(&b.attr), "seeded");
    let v = tensor_f32(&a.attr.get(0).unwrap());
    assert_eq!(v[0], v[3 * 28 + 3], "one value per 4x4 cell");
    assert!(v.iter().any(|x| *x != 0.0));
}

/// LIME on an image larger than 64 px: its superpixels are SLIC's (as
/// scikit-image computes them, tests/slic.rs), so the attribution is one
/// value per SLIC segment, seeded.
#[test]
fn lime_uses_slic_superpixels_on_large_images() {
    use semcon::explain::{lime, slic};
    let m = load(
        &fixture("train").join("tiny.safetensors"),
        &ModelOptions::default(),
        &Device::Cpu,
    )
    .unwrap();
    let npz = read_npz(&fixture("explain").join("slic.npz"));
    let image = npz["image0"].to_dtype(DType::F32).unwrap(); // astronaut, 3x96x96
    let (c, h, w) = image.dims3().unwrap();
    assert!(h.max(w) > lime::GRID_UP_TO);
    let pixels = tensor_f32(&image);
    let (seg, n) = lime::segments(&pixels, c, h, w);
    assert_eq!(
        (seg.clone(), n),
        slic::slic(&pixels, c, h, w, &Default::default())
    );
    assert!(n > 30, "{n} segments");
    let x = image.unsqueeze(0).unwrap();
    let opts = Options {
        lime: lime::LimeConfig {
            samples: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let a = tensor_f32(
        &explain::explain(&m, &x, &[3], Method::Lime, &opts)
            .unwrap()
            .attr,
    );
    let mut value = vec![None; n];
    for (p, &s) in seg.iter().enumerate() {
        let v = value[s as usize].get_or_insert(a[p]);
        assert_eq!(*v, a[p], "pixel {p}: one value per segment");
    }
    let distinct: std::collections::BTreeSet<u32> = a.iter().map(|v| v.to_bits()).collect();
    assert!(
        distinct.len() > n / 2,
        "{} values for {n} segments",
        distinct.len()
    );
}

/// Heat maps sum the channels: Integrated Gradients keep their sign (and
/// are drawn on the signed palette), saliency shows magnitudes, LIME its
/// positive coefficients.
#[test]
fn heat_maps_keep_igs_sign_only() {
    use semcon::figure::Palette;
    // one sample, 2 channels, 1 x 2 pixels: pixel 0 sums to -3, pixel 1 to +1
    let attr = Tensor::from_vec(vec![-1f32, 2.0, -2.0, -1.0], (1, 2, 1, 2), &Device::Cpu).unwrap();
    let ig = explain::heat_maps(&attr, Method::Ig).unwrap();
    assert_eq!(ig, vec![vec![-3.0, 1.0]]);
    let sal = explain::heat_maps(&attr, Method::Saliency).unwrap();
    assert_eq!(sal, vec![vec![3.0, 3.0]]);
    let lime = explain::heat_maps(&attr, Method::Lime).unwrap();
    assert_eq!(lime, vec![vec![0.0, 1.0]]);
    assert_eq!(Palette::of(Method::Ig), Palette::Signed);
    for m in [Method::Saliency, Method::Gradcam, Method::Lime] {
        assert_eq!(Palette::of(m), Palette::Magnitude);
    }
}
