//! `semcon eval` end to end against PyTorch/torchvision/numpy/scipy
//! (tests/fixtures/make_eval.py): the shipped `standard` checkpoint on 120
//! coloured Fashion-MNIST images; clean accuracy, accuracy/DS/histogram/
//! discontinuity under four torchvision perturbations, PGD accuracy, k* per
//! class; and `semcon attack`'s adversarial images pixel by pixel.

mod common;
use common::{fixture, read_npz, root, tensor_f64, tmp_dir};

use candle_core::Tensor;
use std::collections::HashMap;

const N: f64 = 120.0;

fn reference() -> HashMap<String, Tensor> {
    read_npz(&fixture("eval/standard_ref.npz"))
}

fn scalar(r: &HashMap<String, Tensor>, key: &str) -> f64 {
    let v = tensor_f64(
        r.get(key)
            .unwrap_or_else(|| panic!("reference has no {key}")),
    );
    assert_eq!(v.len(), 1, "{key}");
    v[0]
}

fn counts(j: &serde_json::Value) -> Vec<f64> {
    j["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn within_samples(got: f64, want: f64, samples: f64, what: &str) {
    assert!(
        (got - want).abs() <= samples / N + 1e-12,
        "{what}: semcon {got} vs reference {want} (more than {samples} sample(s) apart)"
    );
}

#[track_caller]
fn rel(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1e-12),
        "{what}: semcon {got} vs reference {want}"
    );
}

/// `semcon CMD -c standard -d fmnist_colour120.npz --device cpu ARGS...`.
fn run_on_fixture(cmd: &str, args: &[&str]) -> common::Run {
    run_on_fixture_env(cmd, args, &[])
}

/// [`run_on_fixture`] with extra environment variables.
fn run_on_fixture_env(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> common::Run {
    let ck = root().join("checkpoints/standard.safetensors");
    let ds = fixture("eval/fmnist_colour120.npz");
    let mut all = vec![
        cmd.to_string(),
        "-c".into(),
        ck.display().to_string(),
        "-d".into(),
        ds.display().to_string(),
        "--device".into(),
        "cpu".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let r = common::semcon_env(&all, env);
    assert!(r.ok, "semcon failed ({:?}): {}", r.code, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

fn model_report(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let r = run_on_fixture("eval", &all);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).expect("eval --format json");
    assert_eq!(j["samples"].as_u64(), Some(120));
    let models = j["models"].as_array().unwrap();
    assert_eq!(models.len(), 1);
    models[0].clone()
}

#[test]
fn eval_matches_pytorch_end_to_end() {
    let r = reference();
    let m = model_report(&[
        "--perturb",
        "contrast:2",
        "--perturb",
        "hue:2",
        "--perturb",
        "crop:2",
        "--perturb",
        "rotate:1",
        "--pgd",
        "4/255",
        "--pgd-step",
        "1/255",
        "--pgd-iters",
        "5",
        "--kstar",
    ]);

    // The reference model must not be degenerate, or the comparison is weak.
    let clean = scalar(&r, "clean_accuracy");
    assert!(clean > 0.5 && clean < 1.0, "{clean}");
    within_samples(
        m["clean_accuracy"].as_f64().unwrap(),
        clean,
        0.0,
        "clean accuracy",
    );

    let rows = m["perturbations"].as_array().unwrap();
    let want = [("contrast", 2), ("hue", 2), ("crop", 2), ("rotate", 1)];
    assert_eq!(rows.len(), want.len());
    for (row, (name, level)) in rows.iter().zip(want) {
        let key = format!("{name}_{level}");
        assert_eq!(row["level"].as_u64(), Some(level as u64), "{key}");
        // Accuracy over 120 samples: identical or one sample apart (a
        // prediction whose top two logits are within float32 rounding).
        within_samples(
            row["accuracy"].as_f64().unwrap(),
            scalar(&r, &format!("{key}_accuracy")),
            1.0,
            &format!("{key} accuracy"),
        );
        rel(
            row["ds_mean"].as_f64().unwrap(),
            scalar(&r, &format!("{key}_ds_mean")),
            2e-4,
            &format!("{key} DS mean"),
        );
        rel(
            row["ds_median"].as_f64().unwrap(),
            scalar(&r, &format!("{key}_ds_median")),
            2e-4,
            &format!("{key} DS median"),
        );
        // The continuity ranks compare DS with same-class clean distances;
        // the contrast row's closest call is 4e-5 relative (printed by the
        // script), so one sample may go either way.
        within_samples(
            row["discontinuity_rate"].as_f64().unwrap(),
            scalar(&r, &format!("{key}_discontinuity")),
            1.0,
            &format!("{key} discontinuity rate"),
        );
        // numpy.histogram over the DS range: same bins, same counts.
        let ds = tensor_f64(&r[&format!("{key}_ds")]);
        let (lo, hi) = ds
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let h = &row["ds_histogram"];
        rel(h["lo"].as_f64().unwrap(), lo, 2e-4, &format!("{key} DS lo"));
        rel(h["hi"].as_f64().unwrap(), hi, 2e-4, &format!("{key} DS hi"));
        assert_eq!(
            counts(h),
            tensor_f64(&r[&format!("{key}_ds_hist")]),
            "{key} DS histogram"
        );
    }

    let pgd = &m["pgd"].as_array().unwrap()[0];
    let cfg = tensor_f64(&r["pgd"]);
    rel(pgd["eps"].as_f64().unwrap(), cfg[0], 1e-6, "eps");
    rel(pgd["step"].as_f64().unwrap(), cfg[1], 1e-6, "step");
    assert_eq!(pgd["iters"].as_f64(), Some(cfg[2]));
    assert_eq!(pgd["random_start"].as_bool(), Some(false));
    let adv = scalar(&r, "pgd_accuracy");
    assert!(
        adv > 0.1 && adv < clean - 0.2,
        "PGD must flip some, not all: {adv}"
    );
    within_samples(pgd["accuracy"].as_f64().unwrap(), adv, 1.0, "PGD accuracy");

    // k* on the clean logits: the closest decision is 7e-4 relative, so the
    // values, and with them every statistic, are identical.
    let ks = &m["kstar"];
    assert_eq!(ks["layer"].as_str(), Some("logits"));
    assert_eq!(ks["metric"].as_str(), Some("euclidean"));
    let classes = ks["classes"].as_array().unwrap();
    let want_classes = tensor_f64(&r["kstar_classes"]);
    let stats = tensor_f64(&r["kstar_stats"]);
    let hist = tensor_f64(&r["kstar_hist"]);
    let pattern = tensor_f64(&r["kstar_pattern"]);
    assert_eq!(classes.len(), want_classes.len());
    let mut seen = std::collections::HashSet::new();
    for (i, c) in classes.iter().enumerate() {
        assert_eq!(c["class"].as_f64(), Some(want_classes[i]));
        let s = &stats[i * 4..i * 4 + 4];
        assert_eq!(c["n"].as_f64(), Some(s[0]), "class {i} n");
        rel(c["mean"].as_f64().unwrap(), s[1], 1e-12, "k* mean");
        rel(c["std"].as_f64().unwrap(), s[2], 1e-12, "k* std");
        rel(c["skew"].as_f64().unwrap(), s[3], 1e-9, "k* skew");
        let p = ["A", "B", "C"][pattern[i] as usize];
        assert_eq!(c["pattern"].as_str(), Some(p), "class {i} pattern");
        seen.insert(p);
        assert_eq!(
            counts(&c["histogram"]),
            hist[i * 20..(i + 1) * 20].to_vec(),
            "class {i} k* histogram"
        );
    }
    assert_eq!(seen.len(), 3, "the fixture has all three patterns");
}

#[test]
fn attack_matches_pytorch_pixel_by_pixel() {
    let r = reference();
    let want = tensor_f64(&r["pgd_x_adv_u8"]);
    let dir = tmp_dir("eval_attack");
    let out = dir.join("xadv.npy");
    run_on_fixture(
        "attack",
        &[
            "--eps",
            "4/255",
            "--step",
            "1/255",
            "--iters",
            "5",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let got = common::read_npy(&out);
    assert_eq!(got.shape, vec![120, 3, 28, 28]);
    assert_eq!(got.data.len(), want.len());
    // x, eps and step are multiples of 1/255, so 255 * x_adv is an integer
    // on both sides. On images the model is sure of (1 - p(true class) below
    // 1e-2 at some iterate) the cross-entropy gradient is float32 rounding
    // noise (PyTorch's exp(log p_y) - 1 is exactly 0) and the paths may part;
    // everywhere else the attack must be PyTorch's, pixel by pixel.
    let min_q = tensor_f64(&r["pgd_min_q"]);
    let per = 3 * 28 * 28;
    let (mut differ, mut compared, mut images) = (0usize, 0usize, 0usize);
    for (i, q) in min_q.iter().enumerate() {
        let (g, w) = (
            &got.data[i * per..(i + 1) * per],
            &want[i * per..(i + 1) * per],
        );
        for v in g {
            let v255 = v * 255.0;
            assert!((v255 - v255.round()).abs() < 1e-3, "{v} is not k/255");
            assert!((0.0..=1.0).contains(v));
        }
        if *q > 1e-2 {
            images += 1;
            compared += per;
            differ += g
                .iter()
                .zip(w)
                .filter(|(g, w)| (*g * 255.0).round() != **w)
                .count();
        }
    }
    assert!(images >= 40, "only {images} well-conditioned images");
    assert!(
        differ as f64 <= 1e-3 * compared as f64,
        "{differ} of {compared} adversarial pixels differ from PyTorch's"
    );
}

/// The trained model's logits on real images (they depend on the input far
/// more than the random-init fixture models' do): `semcon features`.
#[test]
fn trained_model_logits_match_pytorch() {
    let r = reference();
    let dir = tmp_dir("eval_logits");
    let out = dir.join("logits.npz");
    run_on_fixture(
        "features",
        &["--layer", "logits", "--out", out.to_str().unwrap()],
    );
    let got = read_npz(&out);
    let (g, w) = (
        common::tensor_f32(&got["features"]),
        common::tensor_f32(&r["clean_logits"]),
    );
    assert_eq!(g.len(), w.len());
    // Across images the logits spread by several units: the comparison is
    // far tighter than that spread.
    let spread = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 5.0, "{spread}");
    common::assert_close(&g, &w, 1e-4, "standard logits");
    assert_eq!(
        tensor_f64(&got["labels"]),
        tensor_f64(&r["labels"]),
        "labels read from the .npz"
    );
}

/// A device out of memory halves the batch and retries (`eval::in_batches`).
/// Without a GPU in CI, `SEMCON_SIMULATE_OOM_ABOVE` makes every batch of more
/// than 7 images fail as a GPU out of memory would: eval, attack and features
/// must then say so, finish, and give exactly the numbers and bytes of the run
/// that never ran out (PGD's random start is seeded per image, so batch
/// boundaries do not matter).
#[test]
fn out_of_memory_halves_the_batch_with_the_same_results() {
    let oom = [("SEMCON_SIMULATE_OOM_ABOVE", "7")];
    let dir = tmp_dir("eval_oom");
    let eval = [
        "--format",
        "json",
        "--batch",
        "32",
        "--perturb",
        "contrast:2",
        "--pgd",
        "4/255",
        "--pgd-iters",
        "3",
        "--random-start",
        "--kstar",
    ];
    let plain = run_on_fixture("eval", &eval);
    assert!(!plain.stderr.contains("out of memory"), "{}", plain.stderr);
    let halved = run_on_fixture_env("eval", &eval, &oom);
    for want in [
        "retrying with batch 16",
        "retrying with batch 8",
        "retrying with batch 4",
    ] {
        assert!(
            halved.stderr.contains(want),
            "no '{want}' in {}",
            halved.stderr
        );
    }
    let report = |r: &common::Run| {
        let mut j: serde_json::Value = serde_json::from_str(&r.stdout).expect("eval json");
        strip_timings(&mut j);
        j
    };
    // CPU GEMM blocking depends on the batch size, so DS may move in the last
    // float32 bits; every count, accuracy and k* must be the same.
    assert_json_close(&report(&halved), &report(&plain), "eval report");

    // `CMD ARGS --out DIR/plain.EXT`, then with the simulated out of memory
    // `--out DIR/halved.EXT`: both runs, and the two output paths.
    let both = |cmd: &str, args: &[&str], ext: &str| {
        let out = |name: &str| dir.join(format!("{name}.{ext}"));
        let (p, h) = (out("plain"), out("halved"));
        let plain = run_on_fixture(cmd, &[args, &["--out", p.to_str().unwrap()]].concat());
        let halved =
            run_on_fixture_env(cmd, &[args, &["--out", h.to_str().unwrap()]].concat(), &oom);
        (plain, halved, p, h)
    };
    let attack = [
        "--eps",
        "4/255",
        "--iters",
        "3",
        "--random-start",
        "--batch",
        "50",
    ];
    let (a, b, pa, pb) = both("attack", &attack, "npy");
    assert!(b.stderr.contains("retrying with batch 6"), "{}", b.stderr);
    assert_eq!(a.stdout, b.stdout);
    let (pa, pb) = (common::read_npy(&pa), common::read_npy(&pb));
    assert_eq!(pa.shape, vec![120, 3, 28, 28]);
    assert_eq!((pa.shape, pa.data), (pb.shape, pb.data), "x_adv");

    let (_, r, fa, fb) = both("features", &["--layer", "layer3", "--batch", "100"], "npz");
    assert!(r.stderr.contains("retrying with batch 6"), "{}", r.stderr);
    let (fa, fb) = (read_npz(&fa), read_npz(&fb));
    assert_eq!(fa["features"].dims()[0], 120);
    assert_eq!(fa["features"].dims(), fb["features"].dims());
    common::assert_close_scaled(
        &common::tensor_f32(&fb["features"]),
        &common::tensor_f32(&fa["features"]),
        1e-5,
        "features with halved batches",
    );
}

/// Same JSON structure and values; numbers within 1e-5 relative.
#[track_caller]
fn assert_json_close(got: &serde_json::Value, want: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (got, want) {
        (Object(g), Object(w)) => {
            assert_eq!(
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (k, v) in w {
                assert_json_close(&g[k], v, &format!("{at}.{k}"));
            }
        }
        (Array(g), Array(w)) => {
            assert_eq!(g.len(), w.len(), "{at}");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_json_close(g, w, &format!("{at}[{i}]"));
            }
        }
        (Number(g), Number(w)) if g.is_f64() || w.is_f64() => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1e-6),
                "{at}: {g} vs {w}"
            );
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

/// Drops wall-clock fields (seconds, images/s) from an eval report.
fn strip_timings(j: &mut serde_json::Value) {
    match j {
        serde_json::Value::Object(m) => {
            m.retain(|k, _| !k.contains("seconds") && !k.contains("per_s") && !k.contains("time"));
            m.values_mut().for_each(strip_timings);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_timings),
        _ => {}
    }
}
