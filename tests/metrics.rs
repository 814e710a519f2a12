//! DS, continuity rank and PGD against numpy / PyTorch references
//! (tests/fixtures/make_metrics.py).

mod common;
use common::{max_abs_diff, tensor_f32, tensor_f64};

use candle_core::{DType, Device, Tensor};
use semcon::metrics::{ds, pgd};
use std::collections::HashMap;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let p = format!(
        "{}/tests/fixtures/metrics/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    Tensor::read_npz(p).unwrap().into_iter().collect()
}

#[test]
fn ds_matches_numpy() {
    let f = fixture("ds.npz");
    let k = f["clean"].dim(1).unwrap();
    let clean: Vec<f32> = f["clean"].flatten_all().unwrap().to_vec1().unwrap();
    let pert: Vec<f32> = f["perturbed"].flatten_all().unwrap().to_vec1().unwrap();
    let got = ds::ds_per_sample(&clean, &pert, k);
    assert_eq!(got.len(), clean.len() / k);
    let want = tensor_f64(&f["ds"]);
    for (g, w) in got.iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-5 * w.max(1.0), "{g} vs {w}");
    }
    let s = ds::summarize(&got, 20);
    let wm = f["ds_mean"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let wmed = f["ds_median"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((s.mean - wm).abs() < 1e-5 * wm, "{} vs {wm}", s.mean);
    assert!(
        (s.median - wmed).abs() < 1e-5 * wmed,
        "{} vs {wmed}",
        s.median
    );
    assert_eq!(s.histogram.counts.iter().sum::<u64>(), got.len() as u64);
}

#[test]
fn continuity_rank_matches_numpy() {
    let f = fixture("ds.npz");
    let k = f["clean"].dim(1).unwrap();
    let clean: Vec<f32> = f["clean"].flatten_all().unwrap().to_vec1().unwrap();
    let pert: Vec<f32> = f["perturbed"].flatten_all().unwrap().to_vec1().unwrap();
    let labels: Vec<u32> = tensor_f64(&f["labels"]).iter().map(|&v| v as u32).collect();
    let ranks = ds::continuity_ranks(&clean, &pert, &labels, k);
    let want: Vec<u32> = tensor_f64(&f["ranks"]).iter().map(|&v| v as u32).collect();
    assert_eq!(ranks, want);
    assert!(
        ranks.iter().any(|&r| r > 1) && ranks.contains(&1),
        "fixture must exercise both cases"
    );
    let rate = f["discontinuity_rate"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((ds::discontinuity_rate(&ranks) - rate).abs() < 1e-12);
    // identical copies are always rank 1
    assert!(ds::continuity_ranks(&clean, &clean, &labels, k)
        .iter()
        .all(|&r| r == 1));
}

/// Exact distance ties (integer logits): a same-class sample exactly as far
/// as the perturbed copy does not count.
#[test]
fn continuity_rank_ties_match_numpy() {
    let f = fixture("ds_ties.npz");
    let k = f["clean"].dim(1).unwrap();
    let clean: Vec<f32> = f["clean"].flatten_all().unwrap().to_vec1().unwrap();
    let pert: Vec<f32> = f["perturbed"].flatten_all().unwrap().to_vec1().unwrap();
    let labels: Vec<u32> = tensor_f64(&f["labels"]).iter().map(|&v| v as u32).collect();
    let want: Vec<u32> = tensor_f64(&f["ranks"]).iter().map(|&v| v as u32).collect();
    assert_eq!(ds::continuity_ranks(&clean, &pert, &labels, k), want);
}

fn fixture_model() -> semcon::model::Model {
    let p = format!(
        "{}/tests/fixtures/models/resnet18_cifar.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    semcon::model::load(p.as_ref(), &Default::default(), &Device::Cpu).unwrap()
}

#[test]
fn pgd_matches_pytorch() {
    let f = fixture("pgd.npz");
    let m = fixture_model();
    let x = f["x"].to_dtype(DType::F32).unwrap();
    let y = f["y"].to_dtype(DType::U32).unwrap();
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
    // The CPU's fused network (what `pgd` runs here) and candle's autograd
    // (what it runs on a GPU) must both match PyTorch.
    let fused = pgd::pgd(&m, &x, &y, &cfg).unwrap();
    let graph = pgd::pgd_with(&x, &y, &cfg, |xi| {
        m.logits(xi)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    })
    .unwrap();
    for (path, out) in [("fused", fused), ("autograd", graph)] {
        check_pgd_against_pytorch(&m, &f, &x, &cfg, &out, path);
    }
}

fn check_pgd_against_pytorch(
    m: &semcon::model::Model,
    f: &std::collections::HashMap<String, Tensor>,
    x: &Tensor,
    cfg: &pgd::PgdConfig,
    out: &pgd::PgdOutput,
    path: &str,
) {
    let want_losses = tensor_f64(&f["losses"]);
    assert_eq!(out.losses.len(), want_losses.len());
    for (i, (g, w)) in out.losses.iter().zip(&want_losses).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 1e-3 * w.abs(),
            "{path}: step {i}: loss {g} vs PyTorch {w}"
        );
    }
    let pred = semcon::metrics::accuracy::predictions(&m.logits(&out.x_adv).unwrap()).unwrap();
    let want: Vec<u32> = tensor_f64(&f["adv_pred"])
        .iter()
        .map(|&v| v as u32)
        .collect();
    let same = pred.iter().zip(&want).filter(|(a, b)| a == b).count();
    assert!(
        same >= 15,
        "{path}: only {same}/16 adversarial predictions agree with PyTorch"
    );
    // the attack must have done something on this fixture
    let clean: Vec<u32> = tensor_f64(&f["clean_pred"])
        .iter()
        .map(|&v| v as u32)
        .collect();
    assert!(pred.iter().zip(&clean).any(|(a, b)| a != b));
    // stays in the eps ball and in [0,1]
    let d = max_abs_diff(&out.x_adv, x);
    assert!(d <= cfg.eps + 1e-6, "{path}: left the eps ball: {d}");
    let got = tensor_f32(&out.x_adv);
    assert!(
        got.iter().all(|v| (0.0..=1.0).contains(v)),
        "{path}: outside [0,1]"
    );
    // and is PyTorch's attack pixel by pixel, up to the gradient components
    // that float32 rounding decides (this fixture model's logits barely
    // depend on the input: 0.3% of the pixels on the fused path; a skipped
    // or shortened step changes about half of them)
    let want = tensor_f32(&f["x_adv"]);
    assert_eq!(got.len(), want.len());
    let differ = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| (*g - *w).abs() > 1e-6)
        .count();
    assert!(
        differ * 100 <= got.len(),
        "{path}: {differ} of {} adversarial pixels differ from PyTorch's",
        got.len()
    );
}

#[test]
fn pgd_random_start_is_seeded_and_bounded() {
    let f = fixture("pgd.npz");
    let m = fixture_model();
    let x = f["x"]
        .to_dtype(DType::F32)
        .unwrap()
        .narrow(0, 0, 4)
        .unwrap();
    let y = f["y"]
        .to_dtype(DType::U32)
        .unwrap()
        .narrow(0, 0, 4)
        .unwrap();
    let cfg = pgd::PgdConfig {
        eps: 8.0 / 255.0,
        step: 2.0 / 255.0,
        iters: 2,
        random_start: true,
        seed: 5,
    };
    let a = pgd::pgd(&m, &x, &y, &cfg).unwrap().x_adv;
    let b = pgd::pgd(&m, &x, &y, &cfg).unwrap().x_adv;
    let c = pgd::pgd(&m, &x, &y, &pgd::PgdConfig { seed: 6, ..cfg })
        .unwrap()
        .x_adv;
    let diff = |p: &Tensor, q: &Tensor| max_abs_diff(p, q);
    assert_eq!(diff(&a, &b), 0.0);
    // candle's autograd draws the same random start and takes the same steps
    // (a rare pixel may step the other way where a gradient is ~0).
    let g = pgd::pgd_with(&x, &y, &cfg, |xi| {
        m.logits(xi)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    })
    .unwrap()
    .x_adv;
    // Each image's random start depends on its index, not on the batching:
    // images 2..4 attacked alone (seed + 2) start where they did in the batch.
    let half = pgd::pgd(
        &m,
        &x.narrow(0, 2, 2).unwrap(),
        &y.narrow(0, 2, 2).unwrap(),
        &pgd::PgdConfig { seed: 7, ..cfg },
    )
    .unwrap()
    .x_adv;
    let (hv, av2) = (tensor_f32(&half), tensor_f32(&a.narrow(0, 2, 2).unwrap()));
    let moved = differing(&hv, &av2);
    assert!(
        moved * 1000 <= hv.len(),
        "{moved} of {} pixels depend on the batching",
        hv.len()
    );
    let (av, gv) = (tensor_f32(&a), tensor_f32(&g));
    let differ = differing(&av, &gv);
    assert!(
        differ * 1000 <= av.len(),
        "{differ} of {} pixels differ",
        av.len()
    );
    assert!(diff(&a, &c) > 0.0);
    assert!(diff(&a, &x) <= cfg.eps + 1e-6);
    let lo = a.min_all().unwrap().to_scalar::<f32>().unwrap();
    let hi = a.max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(lo >= 0.0 && hi <= 1.0);
}

#[test]
fn fractions_parse() {
    assert!((pgd::parse_fraction("8/255").unwrap() - 8.0 / 255.0).abs() < 1e-9);
    assert!((pgd::parse_fraction("0.5").unwrap() - 0.5).abs() < 1e-9);
    assert!(pgd::parse_fraction("x/2").is_err());
    assert!(pgd::parse_fraction("1/0").is_err());
}

/// How many pixels of two images differ (by more than float noise).
fn differing(a: &[f32], b: &[f32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(p, q)| (*p - *q).abs() > 1e-6)
        .count()
}

/// The log-spaced DS histogram against numpy (make_loghist.py): edges as
/// np.geomspace, counts as np.histogram over them, zeros counted apart.
#[test]
fn log_histogram_matches_numpy() {
    let f = fixture("loghist.npz");
    let values = tensor_f64(&f["values"]);
    let want_edges = tensor_f64(&f["edges"]);
    let want_counts: Vec<i64> = f["counts"].to_vec1().unwrap();
    let h = semcon::metrics::LogHistogram::auto(&values, want_counts.len());
    assert_eq!(h.edges.len(), want_edges.len());
    for (g, w) in h.edges.iter().zip(&want_edges) {
        assert!((g - w).abs() <= 1e-12 * w.abs(), "edge {g} vs {w}");
    }
    let got: Vec<i64> = h.counts.iter().map(|&c| c as i64).collect();
    assert_eq!(got, want_counts);
    assert_eq!(
        h.nonpositive as i64,
        f["nonpositive"].to_scalar::<i64>().unwrap()
    );
    // No positive value: no bins, only the zeros.
    let z = semcon::metrics::LogHistogram::auto(&[0.0, 0.0], 20);
    assert!(z.edges.is_empty() && z.counts.is_empty() && z.nonpositive == 2);
}
