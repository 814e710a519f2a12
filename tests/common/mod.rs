//! Helpers shared by the integration tests: fixture paths, the semcon binary,
//! a small .npy reader (plain or gzip-ed, as the fixture scripts write them),
//! closeness checks and CLI error checks.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate root (`SEMCON_TEST_ROOT` where a test binary runs on another
/// machine, as the GPU tests do).
pub fn root() -> PathBuf {
    std::env::var_os("SEMCON_TEST_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// `tests/fixtures/REL`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// `tests/fixtures/models/REL`.
pub fn model_fixture(rel: &str) -> PathBuf {
    fixture("models").join(rel)
}

/// `tests/fixtures/datasets/REL`.
pub fn dataset_fixture(rel: &str) -> PathBuf {
    fixture("datasets").join(rel)
}

/// The semcon binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_semcon"))
}

/// A fresh, empty scratch directory for one test (under cargo's test tmpdir).
pub fn tmp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Recursively copies a directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// An array read from a .npy file, values converted to f64.
#[derive(Debug, Clone)]
pub struct Npy {
    pub shape: Vec<usize>,
    pub descr: String,
    pub data: Vec<f64>,
}

impl Npy {
    pub fn f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
    pub fn i64(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
    pub fn u32(&self) -> Vec<u32> {
        self.data.iter().map(|&v| v as u32).collect()
    }
}

fn header_value<'a>(header: &'a str, key: &str) -> &'a str {
    let k = format!("'{key}':");
    let i = header
        .find(&k)
        .unwrap_or_else(|| panic!("npy header without {key}: {header}"))
        + k.len();
    header[i..].trim_start()
}

/// Reads a little-endian, C-order .npy file (gzip-ed when it starts with the
/// gzip magic): dtypes f4, f8, u1, i4, i8, u4, b1.
pub fn read_npy(path: &Path) -> Npy {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let b = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    };
    assert_eq!(&b[..6], b"\x93NUMPY", "{}: not a .npy file", path.display());
    let (hlen, off) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[off..off + hlen]).unwrap();
    let descr = header_value(header, "descr");
    let descr = descr[1..].split('\'').next().unwrap().to_string();
    assert!(
        header_value(header, "fortran_order").starts_with("False"),
        "{}: Fortran order",
        path.display()
    );
    let shape_s = header_value(header, "shape");
    let shape: Vec<usize> = shape_s[1..shape_s.find(')').unwrap()]
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let body = &b[off + hlen..];
    let n: usize = shape.iter().product();
    let data: Vec<f64> = match descr.as_str() {
        "<f4" => body
            .chunks_exact(4)
            .take(n)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<f8" => body
            .chunks_exact(8)
            .take(n)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        "<i8" => body
            .chunks_exact(8)
            .take(n)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<i4" => body
            .chunks_exact(4)
            .take(n)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "<u4" => body
            .chunks_exact(4)
            .take(n)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "|u1" | "|b1" => body.iter().take(n).map(|&v| v as f64).collect(),
        d => panic!("{}: unsupported npy dtype {d}", path.display()),
    };
    assert_eq!(data.len(), n, "{}: truncated npy data", path.display());
    Npy { shape, descr, data }
}

/// A float32 .npy file: (shape, values).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = read_npy(path);
    (a.shape.clone(), a.f32())
}

/// The expected images and labels the dataset script wrote for NAME:
/// (shape, float32 NCHW values, labels).
pub fn expected_dataset(name: &str) -> (Vec<usize>, Vec<f32>, Vec<u32>) {
    let dir = dataset_fixture("expected");
    let xp = dir.join(format!("{name}_x.npy"));
    let xp = if xp.is_file() {
        xp
    } else {
        dir.join(format!("{name}_x.npy.gz"))
    };
    let (shape, x) = read_npy_f32(&xp);
    let y = read_npy(&dir.join(format!("{name}_y.npy"))).u32();
    (shape, x, y)
}

/// The numeric arrays of an .npz file (as semcon writes them), via candle's
/// reader; the string arrays `semcon features` and `semcon explain` add
/// (`layer`, `class_names`, `models`, `method`, `target`; tests/kstar.rs
/// checks them) are left out.
pub fn read_npz(path: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    let npz = candle_core::npy::NpzTensors::new(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npz.names()
        .into_iter()
        .filter(|n| {
            !matches!(
                n.as_str(),
                "layer" | "class_names" | "models" | "method" | "target"
            )
        })
        .map(|n| {
            let t = npz
                .get(n)
                .unwrap_or_else(|e| panic!("{}: {n}: {e}", path.display()));
            (n.clone(), t.unwrap())
        })
        .collect()
}

/// Flattens a tensor to f32 values.
pub fn tensor_f32(t: &candle_core::Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Flattens a tensor to f64 values.
pub fn tensor_f64(t: &candle_core::Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Largest `|got - want| / max(1, |want|)`.
pub fn max_rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[track_caller]
fn assert_same_len(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
}

/// Every `|got - want| <= tol * max(1, |want|)` (and no NaN).
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_same_len(got, want, what);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}: value {i} is {g}, expected {w} (max relative difference {}, tolerance {tol})",
            max_rel_diff(got, want)
        );
    }
}

/// Bitwise-equal float arrays (values as numpy computes them).
#[track_caller]
pub fn assert_exact(got: &[f32], want: &[f32], what: &str) {
    assert_same_len(got, want, what);
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        let n = (0..got.len())
            .filter(|&i| got[i].to_bits() != want[i].to_bits())
            .count();
        panic!(
            "{what}: {n} values differ, first at {i}: {} vs expected {}",
            got[i], want[i]
        );
    }
}

/// The result of one semcon run.
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs semcon with `args`, with RUST_BACKTRACE=1 as many developers have it
/// (error lines must stay one short line even then).
pub fn semcon<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    semcon_env(args, &[])
}

/// [`semcon`] with extra environment variables.
pub fn semcon_env<I, S>(args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out: Output = Command::new(bin())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        // The decoded-image cache of image folders stays inside target/.
        .env(
            "SEMCON_CACHE_DIR",
            root().join("target").join("tmp").join("semcon-cache"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("cannot run semcon");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs semcon and requires success.
#[track_caller]
pub fn semcon_ok<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let r = semcon(args);
    assert!(r.ok, "semcon failed ({:?}): {}", r.code, r.stderr);
    assert!(
        !r.stderr.contains("panicked"),
        "semcon panicked: {}",
        r.stderr
    );
    r
}

/// A failed run with exactly one `error:` line on stderr (other lines may only
/// be `warning:`/`notice:` lines), no panic, exit code 1; returns the error line.
#[track_caller]
pub fn expect_error(r: &Run) -> String {
    assert!(
        !r.ok,
        "semcon succeeded but should have failed; stderr: {}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("panicked"),
        "semcon panicked: {}",
        r.stderr
    );
    assert_eq!(r.code, Some(1), "exit code; stderr: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "expected one 'error:' line, stderr: {}",
        r.stderr
    );
    for l in &lines {
        assert!(
            l.starts_with("error:") || l.starts_with("warning:") || l.starts_with("notice:"),
            "unexpected stderr line {l:?}; stderr: {}",
            r.stderr
        );
    }
    let line = errors[0];
    assert!(
        !line.contains("candle_core::") && !line.contains(" at /") && line.len() < 400,
        "error line carries a backtrace or is too long: {line}"
    );
    line.to_string()
}

/// [`expect_error`], and the error line contains every one of `needles`.
#[track_caller]
pub fn expect_error_with(r: &Run, needles: &[&str]) -> String {
    let line = expect_error(r);
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
    line
}

/// max |a - b| over two tensors of the same shape.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// PyTorch's features of fixture model `name` at `tap` (shape, values).
pub fn expected(name: &str, tap: semcon::model::Tap) -> (Vec<usize>, Vec<f32>) {
    use semcon::model::Tap;
    match tap {
        Tap::Logits | Tap::Penultimate => {
            read_npy_f32(&model_fixture(&format!("{name}_{tap}.npy")))
        }
        Tap::Layer(_) | Tap::Stage(_) | Tap::Block(_) => {
            let t = read_npz(&model_fixture(&format!("{name}_layers.npz")))
                .remove(&tap.to_string())
                .unwrap_or_else(|| panic!("{name}_layers.npz has no {tap}"));
            (t.dims().to_vec(), tensor_f32(&t))
        }
    }
}

/// `Model::loss_and_input_grad` of `m` on the fixture `NAME_input.npy`
/// against PyTorch's `NAME_grad.npz`: the loss within 1e-5 relative, the
/// gradient within 1e-4 of its largest value.
pub fn assert_loss_and_grad_match(m: &semcon::model::Model, name: &str) {
    let f = read_npz(&model_fixture(&format!("{name}_grad.npz")));
    let x = candle_core::Tensor::read_npy(model_fixture(&format!("{name}_input.npy"))).unwrap();
    let y = f["labels"].to_dtype(candle_core::DType::U32).unwrap();
    let (loss, grad) = m.loss_and_input_grad(&x, &y).unwrap();
    let (loss, want) = (
        loss.to_scalar::<f32>().unwrap(),
        f["loss"].to_scalar::<f32>().unwrap(),
    );
    assert!(
        (loss - want).abs() <= 1e-5 * want.abs(),
        "{name}: loss {loss} vs {want}"
    );
    assert_eq!(grad.dims(), x.dims());
    assert_close_scaled(&tensor_f32(&grad), &tensor_f32(&f["grad"]), 1e-4, name);
}

/// |got - want| <= tol * max|want| elementwise (gradients are tiny numbers).
pub fn assert_close_scaled(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    assert!(scale > 0.0, "{what}: reference is all zeros");
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max |diff| {worst} vs scale {scale}"
    );
}

/// `n` points of dimension `dim` on a coarse grid (steps of 0.5 in -8..8, so
/// many exact distance ties) with labels in `0..classes`, seeded.
pub fn tie_grid(seed: u64, n: usize, dim: usize, classes: u32) -> (Vec<f64>, Vec<u32>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let x: Vec<f64> = (0..n * dim)
        .map(|_| (rng.gen_range(-8.0..8.0f64) * 2.0).round() / 2.0)
        .collect();
    let y: Vec<u32> = (0..n).map(|_| rng.gen_range(0..classes)).collect();
    (x, y)
}

/// The files in `dir`, sorted (none when it cannot be read).
pub fn dir_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The names of the files in `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    dir_files(dir)
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect()
}
