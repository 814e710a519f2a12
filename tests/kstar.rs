//! k* against the float64 numpy/scipy reference of
//! tests/fixtures/make_kstar.py, plus errors and the `semcon kstar` command.

mod common;

use candle_core::npy::NpzTensors;
use candle_core::{DType, Device, Tensor};
use semcon::metrics::kstar::{
    self, class_moments, kstar_with, summarize, KstarOptions, Method, Metric, Pattern, Thresholds,
};
use std::path::{Path, PathBuf};

const DATASETS: [&str; 4] = ["low", "high", "high32", "offset"];

fn fixture(name: &str) -> PathBuf {
    common::fixture("kstar").join(format!("{name}.npz"))
}

enum Feats {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

struct Fixture {
    feats: Feats,
    dim: usize,
    labels: Vec<u32>,
    npz: NpzTensors,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        let npz = NpzTensors::new(fixture(name)).unwrap();
        let x = npz.get("features").unwrap().unwrap();
        let dim = x.dim(1).unwrap();
        let flat = x.flatten_all().unwrap();
        let feats = match x.dtype() {
            DType::F32 => Feats::F32(flat.to_vec1().unwrap()),
            DType::F64 => Feats::F64(flat.to_vec1().unwrap()),
            d => panic!("{d:?}"),
        };
        let labels = npz
            .get("labels")
            .unwrap()
            .unwrap()
            .to_vec1::<i64>()
            .unwrap();
        let labels = labels.into_iter().map(|v| v as u32).collect();
        Fixture {
            feats,
            dim,
            labels,
            npz,
        }
    }
    fn array(&self, key: &str) -> Tensor {
        self.npz.get(key).unwrap().unwrap()
    }
    fn expected(&self, m: Metric) -> Vec<u32> {
        let v = self.array(&format!("kstar_{m}")).to_vec1::<i64>().unwrap();
        v.into_iter().map(|v| v as u32).collect()
    }
    /// Rows of (mean, std, skew) per sorted class; skew NaN when undefined.
    fn stats(&self, m: Metric) -> Vec<Vec<f64>> {
        self.array(&format!("stats_{m}")).to_vec2::<f64>().unwrap()
    }
    fn run(&self, opts: &KstarOptions) -> semcon::Result<Vec<u32>> {
        match &self.feats {
            Feats::F32(x) => kstar_with(x, self.dim, &self.labels, opts, &Device::Cpu),
            Feats::F64(x) => kstar_with(x, self.dim, &self.labels, opts, &Device::Cpu),
        }
    }
}

fn first_diff(got: &[u32], want: &[u32]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => "none".into(),
        Some(i) => format!(
            "sample {i}: got {} want {} ({} differ)",
            got[i],
            want[i],
            got.iter().zip(want).filter(|(a, b)| a != b).count()
        ),
    }
}

#[test]
fn integers_identical_to_float64_reference_on_every_path() {
    for name in DATASETS {
        let f = Fixture::load(name);
        for metric in Metric::ALL {
            let want = f.expected(metric);
            let mut methods = vec![
                (Method::Auto, 1024),
                (Method::Blocked, 1024),
                (Method::Blocked, 7),
            ];
            if metric != Metric::Cosine {
                methods.push((Method::KdTree, 0));
            }
            for (method, block_rows) in methods {
                let opts = KstarOptions {
                    metric,
                    method,
                    block_rows,
                };
                let got = f.run(&opts).unwrap();
                assert_eq!(
                    got,
                    want,
                    "{name} {metric} {method:?} rows {block_rows}: {}",
                    first_diff(&got, &want)
                );
            }
        }
    }
}

#[test]
fn default_entry_point_matches() {
    // `kstar` picks the kd-tree for low (5 dims) and the blocked path for
    // high (40 dims).
    for name in ["low", "high"] {
        let f = Fixture::load(name);
        let Feats::F64(x) = &f.feats else { panic!() };
        for metric in Metric::ALL {
            let got = kstar::kstar(x, f.dim, &f.labels, metric, &Device::Cpu).unwrap();
            assert_eq!(got, f.expected(metric), "{name} {metric}");
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9
}

#[test]
fn statistics_match_numpy_and_scipy_skew() {
    for name in DATASETS {
        let f = Fixture::load(name);
        let classes = f.array("classes").to_vec1::<i64>().unwrap();
        for metric in Metric::ALL {
            let k = f.expected(metric);
            let r = summarize(&k, &f.labels, &[], metric, Thresholds::default()).unwrap();
            let want = f.stats(metric);
            assert_eq!(r.classes.len(), classes.len());
            for ((c, w), &cls) in r.classes.iter().zip(&want).zip(&classes) {
                let ctx = format!("{name} {metric} class {cls}");
                assert_eq!(c.class as i64, cls, "{ctx}");
                assert!(close(c.mean, w[0]), "{ctx} mean {} vs {}", c.mean, w[0]);
                assert!(close(c.std, w[1]), "{ctx} std {} vs {}", c.std, w[1]);
                match c.skew {
                    None => assert!(w[2].is_nan(), "{ctx}: skew None, scipy {}", w[2]),
                    Some(s) => assert!(close(s, w[2]), "{ctx} skew {s} vs {}", w[2]),
                }
                assert_eq!(
                    c.histogram.counts.iter().sum::<u64>() as usize,
                    c.n,
                    "{ctx}"
                );
            }
        }
    }
}

#[test]
fn skew_is_biased_fisher_pearson() {
    // scipy.stats.skew([1, 2, 3, 10]) (bias=True)
    let m = class_moments(&[1.0, 2.0, 3.0, 10.0]);
    assert!((m.skew.unwrap() - 1.0182337649086284).abs() < 1e-12);
    assert!((m.mean - 4.0).abs() < 1e-12);
    assert!((m.std - 3.5355339059327378).abs() < 1e-12);
    let m = class_moments(&[0.25, 0.25, 0.25]);
    assert_eq!(m.skew, None);
    assert_eq!(m.std, 0.0);
    let m = class_moments(&[1.0]);
    assert_eq!((m.mean, m.std, m.skew), (1.0, 0.0, None));
}

#[test]
fn single_sample_and_zero_variance_classes() {
    let f = Fixture::load("low");
    let k = f.expected(Metric::Euclidean);
    let r = summarize(&k, &f.labels, &[], Metric::Euclidean, Thresholds::default()).unwrap();
    // class 5: one sample; class 4: three isolated points, all k* = 3.
    let c5 = r.classes.iter().find(|c| c.class == 5).unwrap();
    assert_eq!(
        (c5.n, c5.mean, c5.std, c5.skew, c5.pattern),
        (1, 1.0, 0.0, None, None)
    );
    let c4 = r.classes.iter().find(|c| c.class == 4).unwrap();
    assert_eq!((c4.n, c4.mean, c4.skew, c4.pattern), (3, 1.0, None, None));
    assert_eq!(c4.histogram.counts[19], 3);
    let json = serde_json::to_value(&r).unwrap();
    let j5 = &json["classes"][5];
    assert!(j5["skew"].is_null() && j5["pattern"].is_null());
    assert!(!serde_json::to_string(&r).unwrap().contains("NaN"));
    // Patternless classes count only in "all".
    let s = &r.summary;
    assert_eq!(s.all.count, 6);
    assert_eq!(s.a.count + s.b.count + s.c.count, 4);
}

#[test]
fn report_json_shape_and_summary() {
    let f = Fixture::load("high");
    let names: Vec<String> = (0..7).map(|c| format!("class-{c}")).collect();
    let Feats::F64(x) = &f.feats else { panic!() };
    let mut r = kstar::analyze(
        x,
        f.dim,
        &f.labels,
        &names,
        Metric::Cosine,
        Thresholds::default(),
        &Device::Cpu,
    )
    .unwrap();
    r.layer = "logits".into();
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["layer"], "logits");
    assert_eq!(j["metric"], "cosine");
    let c0 = &j["classes"][0];
    for key in [
        "class",
        "name",
        "n",
        "mean",
        "std",
        "skew",
        "pattern",
        "histogram",
    ] {
        assert!(c0.get(key).is_some(), "missing {key}");
    }
    assert_eq!(c0["name"], "class-0");
    for g in ["A", "B", "C", "all"] {
        for key in ["count", "mean", "std", "skew"] {
            assert!(
                j["summary"][g].get(key).is_some(),
                "summary {g} missing {key}"
            );
        }
    }
    // Group means are means of the class statistics.
    let a: Vec<f64> = r
        .classes
        .iter()
        .filter(|c| c.pattern == Some(Pattern::A))
        .map(|c| c.mean)
        .collect();
    assert_eq!(r.summary.a.count, a.len());
    if !a.is_empty() {
        let m = a.iter().sum::<f64>() / a.len() as f64;
        assert!(close(r.summary.a.mean.unwrap(), m));
    }
    let all = r.classes.iter().map(|c| c.std).sum::<f64>() / r.classes.len() as f64;
    assert!(close(r.summary.all.std.unwrap(), all));
}

#[test]
fn thresholds_are_configurable() {
    let f = Fixture::load("high");
    let k = f.expected(Metric::Euclidean);
    let wide = Thresholds {
        fractured: 10.0,
        clustered: -10.0,
    };
    let r = summarize(&k, &f.labels, &[], Metric::Euclidean, wide).unwrap();
    assert_eq!(r.summary.b.count, 6);
    assert_eq!((r.summary.a.count, r.summary.c.count), (0, 0));
    assert_eq!(r.summary.a.mean, None);
    let t = Thresholds::default();
    assert_eq!(t.classify(Some(0.51)), Some(Pattern::A));
    assert_eq!(t.classify(Some(0.5)), Some(Pattern::B));
    assert_eq!(t.classify(Some(-0.5)), Some(Pattern::B));
    assert_eq!(t.classify(Some(-0.51)), Some(Pattern::C));
    assert_eq!(t.classify(None), None);
    let bad = Thresholds {
        fractured: -1.0,
        clustered: 1.0,
    };
    let e = summarize(&k, &f.labels, &[], Metric::Euclidean, bad).unwrap_err();
    assert!(e.to_string().contains("thresholds"), "{e}");
}

#[test]
fn ties_go_to_the_other_class() {
    // 1-D: sample 0 (class 0) at 0; same-class at 1 and 2, other class at 1
    // (tie) and 3. k*_0 = 1: the same-class sample at distance 1 is not
    // counted.
    let x = [0.0f64, 1.0, 2.0, 1.0, 3.0];
    let y = [0u32, 0, 0, 1, 1];
    for method in [Method::KdTree, Method::Blocked] {
        for metric in [Metric::Euclidean, Metric::Cityblock, Metric::Chebyshev] {
            let opts = KstarOptions {
                metric,
                method,
                block_rows: 2,
            };
            let k = kstar_with(&x, 1, &y, &opts, &Device::Cpu).unwrap();
            // 1: same {0 at 1, 2 at 1} vs other 3 at 0 -> 1.
            // 2: same {0 at 2, 1 at 1} vs other 3 at 1, 4 at 1 -> 1.
            // 3: same {4 at 2} vs other 1 at 0 -> 1. 4: same {3 at 2} vs 2 at 1 -> 1.
            assert_eq!(k, vec![1, 1, 1, 1, 1], "{metric} {method:?}");
        }
    }
    // Strictly closer same-class samples are counted: sample 0 has 0.5 and
    // 0.9 before the other class at 1; sample 1 (at 0.5) has 0.9 (0.4) but
    // not 0 (0.5, tied with the other class).
    let x = [0.0f64, 0.5, 0.9, 1.0];
    let y = [0u32, 0, 0, 1];
    for method in [Method::KdTree, Method::Blocked] {
        let opts = KstarOptions {
            method,
            ..KstarOptions::default()
        };
        let k = kstar_with(&x, 1, &y, &opts, &Device::Cpu).unwrap();
        assert_eq!(k, vec![3, 2, 1, 1], "{method:?}");
    }
}

#[test]
fn degenerate_inputs() {
    // One class only: every sample gets k* = n_c.
    let x = [0.0f64, 1.0, 5.0, 7.0];
    for method in [Method::KdTree, Method::Blocked] {
        let opts = KstarOptions {
            method,
            ..KstarOptions::default()
        };
        assert_eq!(
            kstar_with(&x, 1, &[3, 3, 3, 3], &opts, &Device::Cpu).unwrap(),
            vec![4; 4]
        );
        // All points identical, two classes: k* = 1 everywhere.
        let z = [2.0f32; 8];
        assert_eq!(
            kstar_with(&z, 2, &[0, 1, 0, 1], &opts, &Device::Cpu).unwrap(),
            vec![1; 4]
        );
    }
    // Sparse label values are fine.
    let k = kstar::kstar(&x, 1, &[7, 7, 1000, 1000], Metric::Euclidean, &Device::Cpu).unwrap();
    assert_eq!(k, vec![2, 2, 2, 2]);
}

#[test]
fn kdtree_and_blocked_agree_on_a_larger_random_set() {
    // Coordinates on a coarse grid: many exact ties.
    let dim = 4;
    let (x, y) = common::tie_grid(7, 3000, dim, 12);
    for metric in [Metric::Euclidean, Metric::Cityblock, Metric::Chebyshev] {
        let run = |method| {
            let opts = KstarOptions {
                metric,
                method,
                block_rows: 512,
            };
            kstar_with(&x, dim, &y, &opts, &Device::Cpu).unwrap()
        };
        let (a, b) = (run(Method::KdTree), run(Method::Blocked));
        assert_eq!(a, b, "{metric}: {}", first_diff(&a, &b));
    }
}

fn err_text(r: semcon::Result<Vec<u32>>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn input_errors_are_clear() {
    let dev = Device::Cpu;
    let mut x = vec![0.5f32; 12];
    x[7] = f32::NAN;
    let e = err_text(kstar::kstar(&x, 3, &[0, 0, 1, 1], Metric::Euclidean, &dev));
    assert!(
        e.contains("NaN") && e.contains("row 2") && e.contains("column 1"),
        "{e}"
    );
    let mut x = vec![0.5f64; 12];
    x[0] = f64::NEG_INFINITY;
    let e = err_text(kstar::kstar(&x, 3, &[0, 0, 1, 1], Metric::Cosine, &dev));
    assert!(e.contains("infinite") && e.contains("row 0"), "{e}");
    let x = vec![0.5f64; 12];
    let e = err_text(kstar::kstar(&x, 3, &[0, 0, 1], Metric::Euclidean, &dev));
    assert!(e.contains("4 rows") && e.contains("3 labels"), "{e}");
    let e = err_text(kstar::kstar(&x, 5, &[0, 0], Metric::Euclidean, &dev));
    assert!(e.contains("dimension 5"), "{e}");
    let e = err_text(kstar::kstar(&x, 0, &[0, 0], Metric::Euclidean, &dev));
    assert!(e.contains("dimension"), "{e}");
    let e = err_text(kstar::kstar::<f64>(&[], 3, &[], Metric::Euclidean, &dev));
    assert!(e.contains("no samples"), "{e}");
    let mut x = vec![0.5f64; 12];
    x[3..6].fill(0.0);
    let e = err_text(kstar::kstar(&x, 3, &[0, 0, 1, 1], Metric::Cosine, &dev));
    assert!(e.contains("cosine") && e.contains("sample 1"), "{e}");
    let opts = KstarOptions {
        metric: Metric::Cosine,
        method: Method::KdTree,
        block_rows: 8,
    };
    let e = err_text(kstar_with(&[1.0f64, 2.0], 1, &[0, 1], &opts, &dev));
    assert!(e.contains("kd-tree"), "{e}");
    let e = summarize(&[1, 1], &[0], &[], Metric::Euclidean, Thresholds::default()).unwrap_err();
    assert!(e.to_string().contains("labels"));
}

#[test]
fn metric_names() {
    for m in Metric::ALL {
        assert_eq!(m.to_string().parse::<Metric>().unwrap(), m);
    }
    assert_eq!("Cosine".parse::<Metric>().unwrap(), Metric::Cosine);
    assert_eq!(Metric::default(), Metric::Euclidean);
    let e = "manhattan".parse::<Metric>().unwrap_err().to_string();
    assert!(
        e.contains("manhattan") && e.contains("euclidean, cityblock, chebyshev, cosine"),
        "{e}"
    );
}

// ---- CLI ----

fn tmpdir(tag: &str) -> PathBuf {
    common::tmp_dir(&format!("kstar-{tag}"))
}

#[test]
fn cli_json_and_out() {
    let dir = tmpdir("json");
    let out = dir.join("k.npy");
    let npz = fixture("high");
    let stdout = common::semcon_ok([
        "kstar",
        "--features",
        npz.to_str().unwrap(),
        "--metric",
        "cityblock",
        "--format",
        "json",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ])
    .stdout;
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["metric"], "cityblock");
    // an .npz without a `layer` array and no --layer: no layer is claimed
    assert_eq!(j["layer"], "");
    assert_eq!(j["classes"].as_array().unwrap().len(), 7);
    assert!(j["classes"][6]["skew"].is_null());
    let f = Fixture::load("high");
    let want = f.stats(Metric::Cityblock);
    for (c, w) in j["classes"].as_array().unwrap().iter().zip(&want) {
        assert!(close(c["mean"].as_f64().unwrap(), w[0]));
    }
    let k = Tensor::read_npy(&out).unwrap();
    assert_eq!(k.dtype(), DType::I64);
    let k: Vec<u32> = k
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect();
    assert_eq!(k, f.expected(Metric::Cityblock));
    std::fs::remove_dir_all(&dir).ok();
}

/// The layouts numpy also writes (make_kstar.py formats): np.savez_compressed,
/// and Fortran-order big-endian .npy features with big-endian int32 labels.
#[test]
fn cli_reads_compressed_npz_and_fortran_big_endian_npy() {
    let dir = tmpdir("formats");
    let f = Fixture::load("high32");
    let want = f.expected(Metric::Euclidean);
    let kfix = |name: &str| common::fixture("kstar").join(name);
    let run = |args: &[&str], out: &Path| -> Vec<u32> {
        let mut a = vec!["kstar", "--device", "cpu", "--format", "json", "--out"];
        a.push(out.to_str().unwrap());
        a.extend_from_slice(args);
        common::semcon_ok(a);
        Tensor::read_npy(out)
            .unwrap()
            .to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    };
    let compressed = kfix("high32_compressed.npz");
    assert_eq!(
        run(
            &["--features", compressed.to_str().unwrap()],
            &dir.join("a.npy")
        ),
        want
    );
    let (x, y) = (kfix("high32_fortran_be.npy"), kfix("high32_labels_be.npy"));
    assert_eq!(
        run(
            &[
                "--features",
                x.to_str().unwrap(),
                "--labels",
                y.to_str().unwrap()
            ],
            &dir.join("b.npy")
        ),
        want
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_table_from_npy_files() {
    let dir = tmpdir("table");
    let f = Fixture::load("high32");
    let x = f.array("features");
    let y = f.array("labels");
    let (xp, yp) = (dir.join("f.npy"), dir.join("y.npy"));
    x.write_npy(&xp).unwrap();
    y.write_npy(&yp).unwrap();
    let stdout = common::semcon_ok([
        "kstar",
        "--features",
        xp.to_str().unwrap(),
        "--labels",
        yp.to_str().unwrap(),
        "--metric",
        "chebyshev",
        "--format",
        "table",
        "--class-names",
        "ant,bee,cat,dog,eel",
        "--layer",
        "penultimate",
    ])
    .stdout;
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].contains("penultimate") && lines[0].contains("chebyshev"),
        "{stdout}"
    );
    for (c, name) in ["ant", "bee", "cat", "dog", "eel"].iter().enumerate() {
        let line = lines.iter().find(|l| l.contains(name)).expect(name);
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], c.to_string());
        assert_eq!(cols[2], "60");
        let want = f.stats(Metric::Chebyshev)[c][0];
        assert!(
            (cols[3].parse::<f64>().unwrap() - want).abs() < 1e-4,
            "{line}"
        );
    }
    for g in ["A fractured", "B overlapped", "C clustered", "all"] {
        assert!(lines.iter().any(|l| l.starts_with(g)), "{g}: {stdout}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    common::expect_error_with(&common::semcon(args), &[needle]);
}

#[test]
fn cli_errors_are_one_line() {
    let dir = tmpdir("err");
    let f = Fixture::load("low");
    let xp = dir.join("f.npy");
    f.array("features").write_npy(&xp).unwrap();
    let x = xp.to_str().unwrap();
    let npz = fixture("low");
    let npz = npz.to_str().unwrap();
    assert_one_line_error(&["kstar", "--features", x], "--labels");
    assert_one_line_error(
        &["kstar", "--features", npz, "--metric", "l7"],
        "expected one of",
    );
    assert_one_line_error(
        &["kstar", "--features", npz, "--format", "xml"],
        "json or table",
    );
    let missing = dir.join("missing.npz");
    assert_one_line_error(
        &["kstar", "--features", missing.to_str().unwrap()],
        "no such file",
    );
    // Features with a NaN, labels of the wrong length.
    let mut v = vec![1.0f32; 12];
    v[4] = f32::NAN;
    let bad = dir.join("nan.npy");
    Tensor::from_vec(v, (4, 3), &Device::Cpu)
        .unwrap()
        .write_npy(&bad)
        .unwrap();
    let yp = dir.join("y.npy");
    Tensor::from_vec(vec![0i64, 0, 1, 1], 4, &Device::Cpu)
        .unwrap()
        .write_npy(&yp)
        .unwrap();
    let (b, y) = (bad.to_str().unwrap(), yp.to_str().unwrap());
    assert_one_line_error(&["kstar", "--features", b, "--labels", y], "NaN");
    assert_one_line_error(&["kstar", "--features", x, "--labels", y], "labels");
    std::fs::remove_dir_all(&dir).ok();
}

/// `semcon features` stores the layer and the class names as numpy string
/// arrays (`np.array("penultimate")`, `np.array([...])`). semcon reads
/// numpy's own (make_kstar.py formats: high32_named.npz, with a non-ASCII
/// name) and encodes every member byte for byte as numpy does; `semcon
/// kstar` takes both from the file unless --layer/--class-names say otherwise.
#[test]
fn string_arrays_read_and_written_as_numpy_does() {
    use semcon::data::npyz::{encode_npy, NpyArray, Npz};
    let p = fixture("high32_named");
    let npz = Npz::open(&p).unwrap();
    let names = ["T-shirt/top", "Trouser", "Pullöver", "Dress", "Ankle boot"].map(String::from);
    let layer = ["penultimate".to_string()];
    assert_eq!(npz.get_strings("layer").unwrap(), Some(layer.to_vec()));
    assert_eq!(
        npz.get_strings("class_names").unwrap(),
        Some(names.to_vec())
    );
    assert!(npz.get_strings("none").unwrap().is_none());
    let err = npz.get_strings("labels").unwrap_err().to_string();
    assert!(err.contains("expected a string array"), "{err}");
    let features = npz.get("features").unwrap().unwrap();
    let labels = npz.get("labels").unwrap().unwrap();
    for (name, a) in [
        ("features", NpyArray::Tensor(&features)),
        ("labels", NpyArray::Tensor(&labels)),
        ("layer", NpyArray::Strings(&layer)),
        ("class_names", NpyArray::Strings(&names)),
    ] {
        let numpy = npz.npy_bytes(name).unwrap().unwrap();
        assert_eq!(encode_npy(&a).unwrap(), numpy, "{name}");
    }

    let p = p.to_str().unwrap();
    let run = |extra: &[&str]| -> serde_json::Value {
        let args = [
            &[
                "kstar",
                "--features",
                p,
                "--format",
                "json",
                "--device",
                "cpu",
            ],
            extra,
        ]
        .concat();
        serde_json::from_str(&common::semcon_ok(args).stdout).unwrap()
    };
    let class_names = |j: &serde_json::Value| -> Vec<String> {
        j["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let j = run(&[]);
    assert_eq!(j["layer"], "penultimate");
    assert_eq!(class_names(&j), names);
    let j = run(&["--layer", "layer4", "--class-names", "a,b,c,d,e"]);
    assert_eq!(j["layer"], "layer4");
    assert_eq!(class_names(&j), ["a", "b", "c", "d", "e"]);
}

/// `semcon features` then `semcon kstar`: the report names the layer the
/// features came from and the dataset's classes.
#[test]
fn features_then_kstar_keeps_layer_and_class_names() {
    let dir = tmpdir("features_layer");
    let out = dir.join("f.npz");
    let ck = common::root().join("checkpoints/standard.safetensors");
    common::semcon_ok([
        "features",
        "-c",
        ck.to_str().unwrap(),
        "-d",
        "builtin:fashion-mnist:colour",
        "--samples",
        "60",
        "--layer",
        "penultimate",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let npz = semcon::data::npyz::Npz::open(&out).unwrap();
    assert_eq!(
        npz.names(),
        ["features", "preds", "labels", "layer", "class_names"]
    );
    assert_eq!(npz.get("features").unwrap().unwrap().dims()[0], 60);
    let j: serde_json::Value = serde_json::from_str(
        &common::semcon_ok([
            "kstar",
            "--features",
            out.to_str().unwrap(),
            "--format",
            "json",
            "--device",
            "cpu",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(j["layer"], "penultimate");
    let names: Vec<&str> = j["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Ankle boot") && names.contains(&"T-shirt/top"),
        "{names:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The k* paper's analysis of transformed and adversarial sets (§IV-C..F)
/// against make_kstar_transformed.py: PyTorch/torchvision compute the
/// latents of the clean, rotated, cropped and PGD samples of a trained
/// fixture model, numpy/scipy k*, the per-class statistics and accuracies and
/// the pattern-group summaries. semcon's `eval --kstar` (its own perturbation,
/// attack and forward pass) gives the same per-class numbers: identical
/// sample counts and accuracies, statistics within 1e-9 (so identical k*
/// integers), and the same group summaries. PGD's images are not
/// bit-identical across frameworks (the sign of a gradient that rounds to
/// about zero can differ, and the attack amplifies it over 10 steps), so for
/// the adversarial set the per-class sum of k* may differ by 2 and the
/// accuracies by one sample; semcon's k* on PyTorch's own adversarial latents
/// is checked exactly at the end.
#[test]
fn transformed_and_adversarial_sets_match_the_reference() {
    let dir = common::fixture("kstar");
    let reference = semcon::data::npyz::Npz::open(&dir.join("transformed.npz")).unwrap();
    let get = |name: &str| -> Vec<f64> {
        let t = reference
            .get(name)
            .unwrap()
            .unwrap_or_else(|| panic!("no {name} in transformed.npz"));
        common::tensor_f64(&t)
    };
    let close = |got: &serde_json::Value, want: f64, what: &str| {
        if want.is_nan() {
            assert!(
                got.is_null(),
                "{what}: {got} where the reference is undefined"
            );
        } else {
            let g = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
            assert!((g - want).abs() <= 1e-9, "{what}: {g} vs {want}");
        }
    };
    for layer in ["logits", "penultimate"] {
        let model = dir.join("transformed_model.safetensors");
        let data = dir.join("transformed_data.npz");
        let r = common::semcon_ok([
            "eval",
            "-c",
            model.to_str().unwrap(),
            "-d",
            data.to_str().unwrap(),
            "--perturb",
            "rotate:1+crop-resize:2",
            "--pgd",
            "8/255",
            "--pgd-step",
            "2/255",
            "--pgd-iters",
            "10",
            "--kstar",
            "--layer",
            layer,
            "--format",
            "json",
        ]);
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let m = &j["models"][0];
        let sets = [
            ("clean", &m["kstar"]),
            ("rotate_L1", &m["perturbations"][0]["kstar"]),
            ("crop_L2", &m["perturbations"][1]["kstar"]),
            ("pgd_8", &m["pgd"][0]["kstar"]),
        ];
        for (name, k) in sets {
            let what = format!("{name} {layer}");
            let exact = name != "pgd_8";
            assert_eq!(k["layer"], layer, "{what}");
            let classes = get(&format!("{name}_{layer}_classes"));
            let stats = get(&format!("{name}_{layer}_stats"));
            let got = k["classes"].as_array().unwrap();
            assert_eq!(got.len(), classes.len(), "{what}: classes");
            for (i, c) in got.iter().enumerate() {
                let row = &stats[i * 5..i * 5 + 5];
                let w = format!("{what} class {}", classes[i]);
                assert_eq!(c["class"].as_f64().unwrap(), classes[i], "{w}");
                assert_eq!(c["n"].as_f64().unwrap(), row[0], "{w}: n");
                if !exact {
                    // sum of k* = mean(k*/n) * n * n
                    let sum = |m: f64| m * row[0] * row[0];
                    let d = sum(c["mean"].as_f64().unwrap()) - sum(row[1]);
                    assert!(d.abs() <= 2.0 + 1e-9, "{w}: sum of k* differs by {d}");
                    let da = c["accuracy"].as_f64().unwrap() - row[4];
                    assert!(da.abs() * row[0] <= 1.0 + 1e-9, "{w}: accuracy");
                    continue;
                }
                close(&c["mean"], row[1], &format!("{w}: mean"));
                close(&c["std"], row[2], &format!("{w}: std"));
                close(&c["skew"], row[3], &format!("{w}: skew"));
                assert_eq!(c["accuracy"].as_f64().unwrap(), row[4], "{w}: accuracy");
                // The split histograms partition the class's samples.
                let total = |h: &serde_json::Value| -> u64 {
                    h["counts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap())
                        .sum()
                };
                let right = total(&c["histogram_correct"]);
                assert_eq!(right + total(&c["histogram_wrong"]), row[0] as u64, "{w}");
                assert_eq!(right as f64, (row[4] * row[0]).round(), "{w}: correct");
            }
            if !exact {
                continue;
            }
            let groups = get(&format!("{name}_{layer}_groups"));
            for (gi, g) in ["A", "B", "C", "all"].iter().enumerate() {
                let row = &groups[gi * 5..gi * 5 + 5];
                let s = &k["summary"][g];
                let w = format!("{what} group {g}");
                assert_eq!(s["count"].as_f64().unwrap(), row[0], "{w}: count");
                close(&s["mean"], row[1], &format!("{w}: mean"));
                close(&s["std"], row[2], &format!("{w}: std"));
                close(&s["skew"], row[3], &format!("{w}: skew"));
                close(&s["accuracy"], row[4], &format!("{w}: accuracy"));
            }
        }
        // The accuracy of each entry is the accuracy its k* block reports.
        let acc = m["perturbations"][0]["accuracy"].as_f64().unwrap();
        let per_class: Vec<(f64, f64)> = m["perturbations"][0]["kstar"]["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["n"].as_f64().unwrap(), c["accuracy"].as_f64().unwrap()))
            .collect();
        let n: f64 = per_class.iter().map(|c| c.0).sum();
        let weighted: f64 = per_class.iter().map(|c| c.0 * c.1).sum::<f64>() / n;
        assert!((weighted - acc).abs() < 1e-12, "{weighted} vs {acc}");
    }
    // The k* integers themselves, on the reference latents.
    for name in ["clean", "rotate_L1", "crop_L2", "pgd_8"] {
        let f = reference
            .get(&format!("{name}_logits_features"))
            .unwrap()
            .unwrap();
        let dim = f.dim(1).unwrap();
        let feats: Vec<f32> = f.flatten_all().unwrap().to_vec1().unwrap();
        let labels: Vec<u32> = get("y").iter().map(|&v| v as u32).collect();
        let k = kstar::kstar(&feats, dim, &labels, Metric::Euclidean, &Device::Cpu).unwrap();
        let want: Vec<u32> = get(&format!("{name}_logits_kstar"))
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(k, want, "{name}");
    }
}

/// `semcon features --layer all` writes every layer from one forward pass
/// (with the model's predictions), and `semcon kstar --layer all` reports
/// each, with accuracies: the penultimate features match PyTorch's, the
/// logits' and penultimate reports match the numpy/scipy reference of
/// make_kstar_transformed.py. Piped into a reader that stops early, kstar
/// ends without a panic.
#[test]
fn features_and_kstar_at_every_layer() {
    let dir = common::fixture("kstar");
    let tmp = common::tmp_dir("kstar_all_layers");
    let out = tmp.join("f.npz");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    common::semcon_ok([
        "features".to_string(),
        "-c".into(),
        s(&dir.join("transformed_model.safetensors")),
        "-d".into(),
        s(&dir.join("transformed_data.npz")),
        "--layer".into(),
        "all".into(),
        "--out".into(),
        s(&out),
    ]);
    let f = semcon::data::npyz::Npz::open(&out).unwrap();
    let reference = semcon::data::npyz::Npz::open(&dir.join("transformed.npz")).unwrap();
    let layers = f.get_strings("layer").unwrap().unwrap();
    assert_eq!(
        layers,
        [
            "logits",
            "penultimate",
            "layer1",
            "layer2",
            "layer3",
            "layer4"
        ]
    );
    let arr = |z: &semcon::data::npyz::Npz, k: &str| -> Vec<f32> {
        let t = z.get(k).unwrap().unwrap_or_else(|| panic!("no {k}"));
        t.flatten_all().unwrap().to_vec1().unwrap()
    };
    assert_eq!(arr(&f, "features"), arr(&f, "features_logits"));
    common::assert_close(
        &arr(&f, "features_penultimate"),
        &arr(&reference, "clean_penultimate_features"),
        1e-4,
        "penultimate",
    );
    let preds = common::tensor_f64(&f.get("preds").unwrap().unwrap());
    let want = arr(&reference, "clean_logits_features");
    for (i, p) in preds.iter().enumerate() {
        let row = &want[i * 10..i * 10 + 10];
        let best = (0..10).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        assert_eq!(*p as usize, best, "prediction of sample {i}");
    }
    let r = common::semcon_ok([
        "kstar",
        "--features",
        &s(&out),
        "--layer",
        "all",
        "--format",
        "json",
    ]);
    let reports: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 6);
    for (rep, layer) in reports.iter().zip(&layers) {
        assert_eq!(rep["layer"], layer.as_str());
        assert!(rep["summary"]["all"]["accuracy"].is_number(), "{layer}");
    }
    for (rep, layer) in reports.iter().take(2).zip(["logits", "penultimate"]) {
        let stats = common::tensor_f64(
            &reference
                .get(&format!("clean_{layer}_stats"))
                .unwrap()
                .unwrap(),
        );
        for (i, c) in rep["classes"].as_array().unwrap().iter().enumerate() {
            let row = &stats[i * 5..i * 5 + 5];
            assert!(
                (c["mean"].as_f64().unwrap() - row[1]).abs() < 1e-9,
                "{layer} {i}"
            );
            assert_eq!(c["accuracy"].as_f64().unwrap(), row[4], "{layer} {i}");
        }
    }
    // Figure 4 (left) of each layer: one PNG per layer.
    let plot = tmp.join("violins.png");
    common::semcon_ok([
        "kstar",
        "--features",
        &s(&out),
        "--layer",
        "all",
        "--plot",
        &s(&plot),
    ]);
    for layer in &layers {
        let p = tmp.join(format!("violins-{layer}.png"));
        let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(img.width() >= 640 && img.height() == 560, "{}", p.display());
    }
    // One layer by name; a name the file does not hold is refused.
    let r = common::semcon_ok([
        "kstar",
        "--features",
        &s(&out),
        "--layer",
        "layer2",
        "--format",
        "json",
    ]);
    let rep: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rep["layer"], "layer2");
    common::expect_error_with(
        &common::semcon(["kstar", "--features", &s(&out), "--layer", "layer9"]),
        &["layer9 is none of them"],
    );
    // Piped into a reader that goes away at once: no panic.
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' kstar --features '{}' --layer all | true",
            common::bin().display(),
            s(&out)
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// The 2-D PCA view equals scikit-learn's `PCA(2).fit_transform` (its sign
/// convention included) on tall and wide latents (make_embed.py); t-SNE is
/// seeded (the same seed, the same picture) and separates nothing it
/// should not: every point finite, not all in one place.
#[test]
fn pca_matches_scikit_learn_and_tsne_is_seeded() {
    use semcon::metrics::embed::{embed, pca, Method};
    let z = semcon::data::npyz::Npz::open(&common::fixture("kstar/embed_pca.npz")).unwrap();
    for case in ["penultimate", "logits", "wide"] {
        let x = z.get(&format!("{case}_x")).unwrap().unwrap();
        let d = x.dim(1).unwrap();
        let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let want = common::tensor_f64(&z.get(&format!("{case}_pca")).unwrap().unwrap());
        let got: Vec<f64> = pca(&x, d).unwrap().into_iter().flatten().collect();
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * scale,
                "{case}: row {} axis {}: {g} vs {w}",
                i / 2,
                i % 2
            );
        }
    }
    let x = z.get("logits_x").unwrap().unwrap();
    let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let a = embed(Method::Tsne, &x, 10, 7).unwrap();
    let b = embed(Method::Tsne, &x, 10, 7).unwrap();
    assert_eq!(a, b, "the same seed gives the same picture");
    assert_eq!(a.len(), 120);
    assert!(a.iter().flatten().all(|v| v.is_finite()));
    let spread = a.iter().map(|p| p[0]).fold(f64::NEG_INFINITY, f64::max)
        - a.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    assert!(spread > 1.0, "t-SNE collapsed to a point ({spread})");
    assert!(embed(Method::Tsne, &x[..20], 10, 7).is_err(), "2 samples");
    assert!(pca(&[f32::NAN, 1.0], 1).is_err());
}

/// §IV-D: `eval --kstar` on the training split and on the test split of the
/// same dataset, each on its own samples.
#[test]
fn kstar_of_the_training_and_test_splits() {
    let ck = common::root().join("checkpoints/standard.safetensors");
    let idx = common::fixture("datasets/idx");
    let mut seen = Vec::new();
    for split in ["train", "test"] {
        let r = common::semcon_ok([
            "eval",
            "-c",
            ck.to_str().unwrap(),
            "-d",
            idx.to_str().unwrap(),
            "--split",
            split,
            "--perturb",
            "none",
            "--kstar",
            "--format",
            "json",
        ]);
        let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let k = &j["models"][0]["kstar"];
        let n: u64 = k["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["n"].as_u64().unwrap())
            .sum();
        assert_eq!(n, j["samples"].as_u64().unwrap(), "{split}");
        assert!(k["summary"]["all"]["accuracy"].is_number(), "{split}");
        seen.push(n);
    }
    // The fixture's training split has 4 images, its test split 5.
    assert_eq!(seen, [4, 5]);
}

/// `eval --kstar --layer all`: the clean set's k* at every layer
/// (`kstar_layers`), the logits' and penultimate reports equal to the
/// numpy/scipy reference, `kstar` itself the logits' report.
#[test]
fn eval_kstar_at_every_layer() {
    let dir = common::fixture("kstar");
    let model = dir.join("transformed_model.safetensors");
    let data = dir.join("transformed_data.npz");
    let r = common::semcon_ok([
        "eval",
        "-c",
        model.to_str().unwrap(),
        "-d",
        data.to_str().unwrap(),
        "--perturb",
        "none",
        "--kstar",
        "--layer",
        "all",
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let m = &j["models"][0];
    let layers: Vec<&str> = m["kstar_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["layer"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        [
            "logits",
            "penultimate",
            "layer1",
            "layer2",
            "layer3",
            "layer4"
        ]
    );
    assert_eq!(m["kstar"], m["kstar_layers"][0]);
    let reference = semcon::data::npyz::Npz::open(&dir.join("transformed.npz")).unwrap();
    for (i, layer) in ["logits", "penultimate"].iter().enumerate() {
        let stats = common::tensor_f64(
            &reference
                .get(&format!("clean_{layer}_stats"))
                .unwrap()
                .unwrap(),
        );
        let classes = m["kstar_layers"][i]["classes"].as_array().unwrap();
        for (c, row) in classes.iter().zip(stats.chunks(5)) {
            assert!(
                (c["mean"].as_f64().unwrap() - row[1]).abs() < 1e-9,
                "{layer}"
            );
            assert_eq!(c["accuracy"].as_f64().unwrap(), row[4], "{layer}");
        }
    }
}
