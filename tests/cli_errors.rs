//! Bad input: each case ends with exit code 1 and one clear `error:` line on
//! stderr naming what is wrong (never a panic, never a backtrace, even with
//! RUST_BACKTRACE=1 as the tests run).

mod common;

use candle_core::{Device, Tensor};
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `semcon features` with a checkpoint and a dataset (on the CPU).
fn features(checkpoint: &Path, dataset: &str, out_dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "features".to_string(),
        "--checkpoint".into(),
        s(checkpoint),
        "--dataset".into(),
        dataset.into(),
        "--out".into(),
        s(&out_dir.join("out.npz")),
        "--device".into(),
        "cpu".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    semcon(&args)
}

/// `semcon features` on the model fixture's own input images (on the CPU).
fn features_on_input(checkpoint: &Path, out_dir: &Path, extra: &[&str]) -> Run {
    let device = ["--device", "cpu"];
    semcon(features_on_input_args(
        checkpoint,
        out_dir,
        &[&device, extra].concat(),
    ))
}

/// The arguments of [`features_on_input`] without a device.
fn features_on_input_args(checkpoint: &Path, out_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "features".to_string(),
        "--checkpoint".into(),
        s(checkpoint),
        "--input".into(),
        s(&model_fixture("resnet18_cifar_input.npy")),
        "--out".into(),
        s(&out_dir.join("out.npz")),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// resnet50 fixture: 5 classes, no sidecar (images are not resized).
fn r50() -> PathBuf {
    model_fixture("resnet50.safetensors")
}

// ------------------------------------------------------------ missing paths

#[test]
fn missing_dataset_path() {
    let dir = tmp_dir("err_missing_dataset");
    let missing = dir.join("no/such/dataset");
    let r = features(&r50(), &s(&missing), &dir, &[]);
    expect_error_with(&r, &[&s(&missing), "cannot open dataset", "No such file"]);
    let r = features(&r50(), &s(&dir.join("x.npz")), &dir, &[]);
    expect_error_with(&r, &["x.npz", "cannot open dataset"]);
    assert!(!dir.join("out.npz").exists(), "no output on failure");
}

#[test]
fn missing_checkpoint_path() {
    let dir = tmp_dir("err_missing_checkpoint");
    for name in ["nothing.pth", "nothing.safetensors"] {
        let p = dir.join(name);
        let r = features(&p, "builtin:fashion-mnist", &dir, &[]);
        expect_error_with(&r, &[&s(&p), "checkpoint not found"]);
    }
    // a directory where the checkpoint file should be
    let d = dir.join("run.safetensors");
    std::fs::create_dir_all(&d).unwrap();
    let r = features(&d, "builtin:fashion-mnist", &dir, &[]);
    expect_error_with(&r, &[&s(&d), "is a directory"]);
}

// ------------------------------------------------------------ idx

fn idx_copy(dir: &Path) -> PathBuf {
    let d = dir.join("idx");
    copy_dir(&dataset_fixture("idx"), &d);
    d
}

#[test]
fn truncated_idx_file() {
    let dir = tmp_dir("err_idx_truncated");
    let d = idx_copy(&dir);
    let img = d.join("t10k-images-idx3-ubyte");
    let b = std::fs::read(&img).unwrap();
    std::fs::write(&img, &b[..100]).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&img),
            "truncated idx file",
            "[5, 6, 7]",
            "226 bytes",
            "100 bytes",
        ],
    );
    // header cut short
    std::fs::write(&img, &b[..10]).unwrap();
    expect_error_with(
        &features(&r50(), &s(&d), &dir, &[]),
        &["truncated idx file"],
    );
    // a truncated gzip stream (train split)
    let gz = d.join("train-images-idx3-ubyte.gz");
    let b = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &b[..b.len() / 2]).unwrap();
    let r = features(&r50(), &s(&d), &dir, &["--split", "train"]);
    expect_error_with(&r, &[&s(&gz), "gzip data is corrupt or truncated"]);
}

#[test]
fn idx_with_wrong_magic_number() {
    let dir = tmp_dir("err_idx_magic");
    let d = idx_copy(&dir);
    let img = d.join("t10k-images-idx3-ubyte");
    let mut b = std::fs::read(&img).unwrap();
    b[3] = 0x02;
    std::fs::write(&img, &b).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&img),
            "wrong idx magic number 0x00000802",
            "expected 0x00000803",
        ],
    );
    // images and labels swapped
    let r = features(&r50(), &s(&d.join("t10k-labels-idx1-ubyte")), &dir, &[]);
    expect_error_with(&r, &["idx labels file", "give the images file"]);
}

#[test]
fn idx_without_labels_file() {
    let dir = tmp_dir("err_idx_labels");
    let d = idx_copy(&dir);
    std::fs::remove_file(d.join("t10k-labels-idx1-ubyte")).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(&r, &["no labels file", "t10k-labels-idx1-ubyte"]);
}

/// An idx images file with header `dims` followed by `pixels` bytes, and a
/// labels file with `labels` zeros, in `dir` (the test split's names).
fn write_idx(dir: &Path, dims: [u32; 3], pixels: usize, labels: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut b = vec![0, 0, 8, 3];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.resize(b.len() + pixels, 0);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), b).unwrap();
    let mut b = vec![0, 0, 8, 1];
    b.extend(labels.to_be_bytes());
    b.resize(b.len() + labels as usize, 0);
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), b).unwrap();
}

/// Images of 0x0 pixels are rejected where every dataset is read, for every
/// command (they used to panic in eval, perturb and train).
#[test]
fn idx_images_of_zero_pixels() {
    let dir = tmp_dir("err_idx_zero_pixels");
    let d = dir.join("idx");
    write_idx(&d, [5, 0, 0], 0, 5);
    let img = s(&d.join("t10k-images-idx3-ubyte"));
    let want = [img.as_str(), "images are 0x0 pixels"];
    expect_error_with(&features(&r50(), &s(&d), &dir, &[]), &want);
    let (ck, ds) = (s(&r50()), s(&d));
    let (p_out, t_out) = (s(&dir.join("p.npy")), s(&dir.join("t.safetensors")));
    for args in [
        vec!["eval", "-c", &ck, "-d", &ds, "--perturb", "none"],
        vec!["attack", "-c", &ck, "-d", &ds],
        vec![
            "train", "-d", &ds, "--split", "test", "--width", "2", "--out", &t_out,
        ],
    ] {
        expect_error_with(&semcon([&args[..], &["--device", "cpu"]].concat()), &want);
    }
    let r = semcon([
        "perturb",
        "-d",
        &ds,
        "--perturb",
        "hue",
        "--level",
        "1",
        "--out",
        &p_out,
    ]);
    expect_error_with(&r, &want);
}

/// Header sizes whose product overflows a usize are a truncated file, not a
/// wrapped-around size (2^22 x 2^21 x 2^21 = 2^64).
#[test]
fn idx_header_sizes_that_overflow() {
    let dir = tmp_dir("err_idx_overflow");
    let d = dir.join("idx");
    write_idx(&d, [1 << 22, 1 << 21, 1 << 21], 16, 4);
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            "t10k-images-idx3-ubyte",
            "truncated idx file",
            "[4194304, 2097152, 2097152]",
            "more than 2^64 bytes",
            "32 bytes",
        ],
    );
}

// ------------------------------------------------------------ CIFAR

#[test]
fn truncated_cifar_file() {
    let dir = tmp_dir("err_cifar_truncated");
    let d = dir.join("cifar10");
    copy_dir(&dataset_fixture("cifar10"), &d);
    let f = d.join("test_batch.bin");
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..10000]).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&f),
            "truncated CIFAR-10 binary file",
            "10000 bytes",
            "3073-byte records",
        ],
    );
    // the file on its own
    let r = features(&r50(), &s(&f), &dir, &[]);
    expect_error_with(&r, &[&s(&f), "truncated CIFAR binary file", "3073", "3074"]);
    // CIFAR-100
    let d = dir.join("cifar100");
    copy_dir(&dataset_fixture("cifar100"), &d);
    let f = d.join("test.bin");
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..5000]).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&f),
            "truncated CIFAR-100 binary file",
            "3074-byte records",
        ],
    );
    // empty
    std::fs::write(&f, b"").unwrap();
    expect_error_with(
        &features(&r50(), &s(&f), &dir, &[]),
        &["truncated CIFAR binary file", "0 bytes"],
    );
}

#[test]
fn cifar_directory_missing_a_batch_or_bad_label() {
    let dir = tmp_dir("err_cifar_batch");
    let d = dir.join("cifar10");
    copy_dir(&dataset_fixture("cifar10"), &d);
    std::fs::remove_file(d.join("data_batch_4.bin")).unwrap();
    let r = features(&r50(), &s(&d), &dir, &["--split", "train"]);
    expect_error_with(&r, &["data_batch_4.bin", "missing", "data_batch_1.bin"]);
    // a label byte that no CIFAR-10 record has
    let f = d.join("test_batch.bin");
    let mut b = std::fs::read(&f).unwrap();
    b[3073] = 200;
    std::fs::write(&f, &b).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(&r, &[&s(&f), "record 1 has label 200", "0..9"]);
}

// ------------------------------------------------------------ npz

fn write_npz(p: &Path, arrays: &[(&str, Tensor)]) {
    let refs: Vec<(&str, &Tensor)> = arrays.iter().map(|(n, t)| (*n, t)).collect();
    Tensor::write_npz(&refs, p).unwrap();
}

fn images_u8(n: usize) -> Tensor {
    Tensor::zeros((n, 8, 8, 3), candle_core::DType::U8, &Device::Cpu).unwrap()
}

fn labels_i64(v: &[i64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

#[test]
fn npz_without_x_or_y() {
    let dir = tmp_dir("err_npz_keys");
    let p = dir.join("no_x.npz");
    write_npz(&p, &[("images", images_u8(2)), ("y", labels_i64(&[0, 1]))]);
    let r = features(&r50(), &s(&p), &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&p),
            "no array 'x'",
            "images",
            "expected 'x' (images) and 'y' (labels)",
        ],
    );
    let p = dir.join("no_y.npz");
    write_npz(&p, &[("x", images_u8(2)), ("labels", labels_i64(&[0, 1]))]);
    let r = features(&r50(), &s(&p), &dir, &[]);
    expect_error_with(&r, &[&s(&p), "no labels 'y'", "labels"]);
}

#[test]
fn npz_bad_contents() {
    let dir = tmp_dir("err_npz_contents");
    type Case<'a> = (&'a str, Vec<(&'a str, Tensor)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "count.npz",
            vec![("x", images_u8(2)), ("y", labels_i64(&[0, 1, 2]))],
            vec!["2 samples", "labels 3"],
        ),
        (
            "negative.npz",
            vec![("x", images_u8(2)), ("y", labels_i64(&[0, -1]))],
            vec!["negative label -1 at sample 1"],
        ),
        (
            "onehot.npz",
            vec![
                ("x", images_u8(2)),
                (
                    "y",
                    Tensor::eye(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
                ),
            ],
            vec!["shape [2, 2]", "one-hot"],
        ),
        (
            "range.npz",
            vec![
                (
                    "x",
                    Tensor::full(37f32, (2, 3, 8, 8), &Device::Cpu).unwrap(),
                ),
                ("y", labels_i64(&[0, 1])),
            ],
            vec!["in [0,1]", "found value 37", "0..255"],
        ),
        (
            "flat.npz",
            vec![
                (
                    "x",
                    Tensor::zeros((2, 64), candle_core::DType::U8, &Device::Cpu).unwrap(),
                ),
                ("y", labels_i64(&[0, 1])),
            ],
            vec!["2 dimensions [2, 64]"],
        ),
    ];
    for (file, arrays, needles) in cases {
        let p = dir.join(file);
        write_npz(&p, &arrays);
        let r = features(&r50(), &s(&p), &dir, &[]);
        let mut all = vec![file];
        all.extend(needles);
        expect_error_with(&r, &all);
    }
    let p = dir.join("junk.npz");
    std::fs::write(&p, b"not a zip at all").unwrap();
    expect_error_with(
        &features(&r50(), &s(&p), &dir, &[]),
        &["junk.npz", "not a readable .npz file"],
    );
}

/// A .npy file's bytes with a header as written (e.g. a crafted shape).
fn npy_bytes(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b.extend(body);
    b
}

/// An .npz (a stored zip, as `np.savez` writes) of raw .npy members.
fn write_npz_raw(p: &Path, members: &[(&str, Vec<u8>)]) {
    let (mut out, mut cd) = (Vec::new(), Vec::new());
    for (name, data) in members {
        let name = format!("{name}.npy");
        let offset = out.len() as u32;
        let sizes = [0u32, data.len() as u32, data.len() as u32]; // crc (unchecked), sizes
        out.extend(b"PK\x03\x04");
        out.extend([20u16, 0, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
        out.extend(sizes.iter().flat_map(|v| v.to_le_bytes()));
        out.extend([name.len() as u16, 0].iter().flat_map(|v| v.to_le_bytes()));
        out.extend(name.as_bytes());
        out.extend(data);
        cd.extend(b"PK\x01\x02");
        cd.extend([20u16, 20, 0, 0, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
        cd.extend(sizes.iter().flat_map(|v| v.to_le_bytes()));
        cd.extend(
            [name.len() as u16, 0, 0, 0, 0]
                .iter()
                .flat_map(|v| v.to_le_bytes()),
        );
        cd.extend([0u32, offset].iter().flat_map(|v| v.to_le_bytes()));
        cd.extend(name.as_bytes());
    }
    let (cd_offset, n) = (out.len() as u32, members.len() as u16);
    out.extend(&cd);
    out.extend(b"PK\x05\x06");
    out.extend([0u16, 0, n, n].iter().flat_map(|v| v.to_le_bytes()));
    out.extend(
        [cd.len() as u32, cd_offset]
            .iter()
            .flat_map(|v| v.to_le_bytes()),
    );
    out.extend(0u16.to_le_bytes());
    std::fs::write(p, out).unwrap();
}

#[test]
fn npz_images_of_zero_pixels() {
    let dir = tmp_dir("err_npz_zero_pixels");
    let p = dir.join("hw0.npz");
    let x = Tensor::zeros((5, 0, 0, 3), candle_core::DType::U8, &Device::Cpu).unwrap();
    write_npz(&p, &[("x", x), ("y", labels_i64(&[0, 1, 2, 3, 4]))]);
    let want = [s(&p), "images are 0x0 pixels".into()];
    let want: Vec<&str> = want.iter().map(|v| v.as_str()).collect();
    expect_error_with(&features(&r50(), &s(&p), &dir, &[]), &want);
    let r = semcon([
        "eval",
        "-c",
        &s(&r50()),
        "-d",
        &s(&p),
        "--perturb",
        "none",
        "--device",
        "cpu",
    ]);
    expect_error_with(&r, &want);
}

/// Array shapes whose byte count overflows a usize (a crafted header).
#[test]
fn npz_shapes_that_overflow() {
    let dir = tmp_dir("err_npz_overflow");
    let p = dir.join("overflow.npz");
    let y = npy_bytes("<i8", "(2,)", &[0; 16]);
    for (shape, want) in [
        (
            "(4294967296, 4294967296, 4294967296)",
            "[4294967296, 4294967296, 4294967296]",
        ),
        (
            "(2, 4294967296, 4294967296, 3)",
            "[2, 4294967296, 4294967296, 3]",
        ),
    ] {
        let x = npy_bytes("|u1", shape, &[0; 16]);
        write_npz_raw(&p, &[("x", x), ("y", y.clone())]);
        expect_error_with(
            &features(&r50(), &s(&p), &dir, &[]),
            &[&s(&p), "array 'x'", want, "more than 2^64 bytes", "has 16"],
        );
    }
    // the writer itself reads back: a valid array through the same path
    let x = npy_bytes("|u1", "(2, 8, 8, 3)", &[0; 384]);
    write_npz_raw(&p, &[("x", x), ("y", y)]);
    let r = features(&r50(), &s(&p), &dir, &[]);
    assert!(r.ok, "{}", r.stderr);
}

// ------------------------------------------------------------ image folder

fn folder_copy(dir: &Path) -> PathBuf {
    let d = dir.join("folder");
    copy_dir(&dataset_fixture("folder"), &d);
    d
}

#[test]
fn image_folder_with_a_non_image_file() {
    let dir = tmp_dir("err_folder_text");
    let d = folder_copy(&dir);
    // As torchvision's ImageFolder: files without an image extension are
    // ignored (said in a notice), the rest is read.
    std::fs::write(d.join("dog/notes.txt"), "not an image").unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l.starts_with("notice:")
            && l.contains("ignored 1 file(s) without an image extension")
            && l.contains("notes.txt")),
        "{}",
        r.stderr
    );
    assert_eq!(read_npz(&dir.join("out.npz"))["features"].dims(), &[9, 5]);
    // a file with an image extension that does not decode stops the load,
    // or is skipped with one warning on request
    let bad = d.join("dog/notes.bmp");
    std::fs::write(&bad, "not an image").unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&bad),
            "cannot decode",
            "not skipped",
            "--skip-bad-images",
        ],
    );
    let r = features(&r50(), &s(&d), &dir, &["--skip-bad-images"]);
    assert!(r.ok, "{}", r.stderr);
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains("skipped 1 image file") && warnings[0].contains("notes.bmp"),
        "{}",
        warnings[0]
    );
    assert_eq!(read_npz(&dir.join("out.npz"))["features"].dims(), &[9, 5]);
}

/// A class folder without images (an empty one, or `.ipynb_checkpoints`)
/// would shift every later class index: refused, as torchvision does.
#[test]
fn image_folder_with_an_empty_class_folder() {
    let dir = tmp_dir("err_folder_empty_class");
    let d = folder_copy(&dir);
    std::fs::create_dir_all(d.join(".ipynb_checkpoints")).unwrap();
    std::fs::create_dir_all(d.join("cow")).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(
        &r,
        &[
            ".ipynb_checkpoints, cow",
            "hold no images",
            "shift every later class index",
        ],
    );
}

#[test]
fn image_folder_with_a_broken_png() {
    let dir = tmp_dir("err_folder_broken");
    let d = folder_copy(&dir);
    let bad = d.join("cat/broken.png");
    std::fs::write(&bad, "definitely not a png").unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    expect_error_with(&r, &[&s(&bad), "not skipped", "--skip-bad-images"]);
    let r = features(&r50(), &s(&d), &dir, &["--skip-bad-images"]);
    assert!(
        r.ok && r.stderr.contains("warning:") && r.stderr.contains("broken.png"),
        "{}",
        r.stderr
    );
}

#[test]
fn image_folder_ignores_hidden_files_and_reads_by_content() {
    let dir = tmp_dir("err_folder_hidden");
    let d = folder_copy(&dir);
    std::fs::write(d.join("cat/.DS_Store"), "mac").unwrap();
    std::fs::write(d.join("dog/._a_rgba.png"), "AppleDouble").unwrap();
    // a PNG with a .jpg name
    std::fs::copy(d.join("frog/a_rgb.PNG"), d.join("frog/d_png_named.jpg")).unwrap();
    let r = features(&r50(), &s(&d), &dir, &[]);
    assert!(r.ok && !r.stderr.contains("warning"), "{}", r.stderr);
    assert_eq!(read_npz(&dir.join("out.npz"))["features"].dims(), &[10, 5]);
}

#[test]
fn empty_or_unrecognised_datasets() {
    let dir = tmp_dir("err_empty");
    let d = dir.join("classes");
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    expect_error_with(&features(&r50(), &s(&d), &dir, &[]), &["holds no images"]);
    let d = dir.join("plain");
    std::fs::create_dir_all(&d).unwrap();
    expect_error_with(
        &features(&r50(), &s(&d), &dir, &[]),
        &["not a dataset", "ROOT/CLASS/IMAGE.png"],
    );
    let p = dir.join("x.npy");
    std::fs::write(&p, "x").unwrap();
    expect_error_with(
        &features(&r50(), &s(&p), &dir, &[]),
        &["unknown dataset format"],
    );
    let p = dir.join("empty.npz");
    write_npz(
        &p,
        &[
            ("x", images_u8(0)),
            (
                "y",
                Tensor::zeros(0, candle_core::DType::I64, &Device::Cpu).unwrap(),
            ),
        ],
    );
    expect_error_with(&features(&r50(), &s(&p), &dir, &[]), &["is empty"]);
}

// ------------------------------------------------------------ checkpoints

fn fixture_state_dict() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(model_fixture("resnet18_cifar.safetensors"), &Device::Cpu)
        .unwrap()
}

fn save_state_dict(sd: &HashMap<String, Tensor>, p: &Path) {
    candle_core::safetensors::save(sd, p).unwrap();
}

#[test]
fn checkpoint_with_a_missing_tensor() {
    let dir = tmp_dir("err_ck_missing");
    let mut sd = fixture_state_dict();
    sd.remove("layer2.0.bn1.running_var").unwrap();
    let p = dir.join("missing.safetensors");
    save_state_dict(&sd, &p);
    let r = features_on_input(&p, &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&p),
            "missing tensor 'layer2.0.bn1.running_var'",
            "[32]",
            "resnet18",
            "cifar stem",
        ],
    );
    // the classifier
    let mut sd = fixture_state_dict();
    sd.remove("fc.weight").unwrap();
    save_state_dict(&sd, &p);
    expect_error_with(
        &features_on_input(&p, &dir, &[]),
        &["missing tensor 'fc.weight'"],
    );
    // a whole stage
    let sd: HashMap<String, Tensor> = fixture_state_dict()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("layer4"))
        .collect();
    save_state_dict(&sd, &p);
    expect_error_with(
        &features_on_input(&p, &dir, &[]),
        &["missing tensor 'layer4.0.conv1.weight'"],
    );
    // not a ResNet at all
    let sd: HashMap<String, Tensor> = [(
        "encoder.weight".to_string(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    )]
    .into();
    save_state_dict(&sd, &p);
    expect_error_with(
        &features_on_input(&p, &dir, &[]),
        &[
            "not a state dict of a family semcon loads",
            "conv1",
            "encoder.weight",
        ],
    );
}

#[test]
fn checkpoint_with_a_misshaped_tensor() {
    let dir = tmp_dir("err_ck_shape");
    let p = dir.join("shape.safetensors");
    let mut sd = fixture_state_dict();
    sd.insert(
        "layer3.1.conv2.weight".into(),
        Tensor::zeros((64, 64, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    save_state_dict(&sd, &p);
    let r = features_on_input(&p, &dir, &[]);
    expect_error_with(
        &r,
        &[
            &s(&p),
            "tensor 'layer3.1.conv2.weight'",
            "[64, 64, 1, 1]",
            "[64, 64, 3, 3]",
        ],
    );
    let mut sd = fixture_state_dict();
    sd.insert(
        "fc.weight".into(),
        Tensor::zeros((10, 99), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    save_state_dict(&sd, &p);
    expect_error_with(
        &features_on_input(&p, &dir, &[]),
        &["tensor 'fc.weight'", "[10, 99]", "[10, 128]"],
    );
    let mut sd = fixture_state_dict();
    sd.insert(
        "conv1.weight".into(),
        Tensor::zeros((16, 3, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    save_state_dict(&sd, &p);
    expect_error_with(
        &features_on_input(&p, &dir, &[]),
        &["'conv1.weight'", "5x5 kernel"],
    );
}

/// Zero sizes and values that would give constant or NaN outputs are
/// rejected when the checkpoint is loaded, naming the file and the tensor.
#[test]
fn checkpoint_with_zero_sizes_or_bad_values() {
    let dir = tmp_dir("err_ck_values");
    let p = dir.join("bad.safetensors");
    let zeros =
        |shape: &[usize]| Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
    let cases: Vec<(&str, Tensor, Vec<&str>)> = vec![
        (
            "conv1.weight",
            zeros(&[16, 0, 3, 3]),
            vec!["[16, 0, 3, 3]", "0 input channels"],
        ),
        (
            "conv1.weight",
            zeros(&[0, 3, 3, 3]),
            vec!["[0, 3, 3, 3]", "width 0"],
        ),
        (
            "fc.weight",
            zeros(&[0, 128]),
            vec!["'fc.weight'", "[0, 128]", "0 classes"],
        ),
    ];
    for (name, t, needles) in cases {
        let mut sd = fixture_state_dict();
        sd.insert(name.into(), t);
        save_state_dict(&sd, &p);
        let mut all = vec![s(&p)];
        all.extend(needles.iter().map(|n| n.to_string()));
        let all: Vec<&str> = all.iter().map(|v| v.as_str()).collect();
        expect_error_with(&features_on_input(&p, &dir, &[]), &all);
    }
    for (name, value, needle) in [
        ("layer3.0.conv1.weight", f32::NAN, "holds NaN/Inf values"),
        ("fc.bias", f32::INFINITY, "holds NaN/Inf values"),
        ("layer1.0.bn2.running_var", -1.0, "holds negative values"),
    ] {
        let mut sd = fixture_state_dict();
        let t = &sd[name];
        let mut v = tensor_f32(t);
        let mid = v.len() / 2;
        v[mid] = value;
        let t = Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
        sd.insert(name.into(), t);
        save_state_dict(&sd, &p);
        let quoted = format!("tensor '{name}'");
        expect_error_with(
            &features_on_input(&p, &dir, &[]),
            &[&format!("checkpoint {}", s(&p)), &quoted, needle],
        );
    }
}

#[test]
fn unreadable_checkpoints() {
    let dir = tmp_dir("err_ck_unreadable");
    for (name, needle) in [
        ("junk.pth", "not a readable PyTorch checkpoint"),
        ("junk.safetensors", "not a readable safetensors file"),
        ("model.onnx", "unknown checkpoint extension '.onnx'"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, "junk").unwrap();
        expect_error_with(&features_on_input(&p, &dir, &[]), &[&s(&p), needle]);
    }
    // a torch.save zip whose central directory is cut off
    let p = dir.join("cut.pth");
    let b = std::fs::read(model_fixture("resnet50.pth")).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    expect_error_with(
        &features_on_input(&p, &dir, &[]),
        &[&s(&p), "not a readable PyTorch checkpoint"],
    );
}

// ------------------------------------------------------------ data vs model

#[test]
fn labels_that_do_not_fit_the_model() {
    let dir = tmp_dir("err_labels");
    let r = features(&r50(), "builtin:fashion-mnist", &dir, &[]);
    expect_error_with(
        &r,
        &[
            "builtin:fashion-mnist",
            "label 9 of sample 0",
            "does not fit a model with 5 classes",
            "0..4",
        ],
    );
}

/// With several models, the one whose classes the labels do not fit is named
/// (also for --shift-dataset, checked before any work).
#[test]
fn label_errors_name_the_checkpoint() {
    let ck = s(&model_fixture("resnet18_cifar.safetensors"));
    let eval = ["eval", "-c", &ck, "--perturb", "none", "--device", "cpu"];
    let r = semcon([&eval[..], &["-c", &s(&r50()), "--samples", "50"]].concat());
    expect_error_with(
        &r,
        &[
            &format!("checkpoint {}", s(&r50())),
            "does not fit a model with 5 classes",
        ],
    );
    let cifar100 = s(&dataset_fixture("cifar100"));
    let data = [
        "-d",
        &s(&dataset_fixture("cifar10")),
        "--shift-dataset",
        &cifar100,
    ];
    let r = semcon([&eval[..], &data].concat());
    expect_error_with(
        &r,
        &[&format!("checkpoint {ck}"), &cifar100, "with 10 classes"],
    );
}

#[test]
fn bad_flags() {
    let dir = tmp_dir("err_flags");
    let ck = model_fixture("resnet18_cifar.safetensors");
    expect_error_with(
        &features(&ck, "builtin", &dir, &["--samples", "0"]),
        &["--samples must be at least 1"],
    );
    expect_error_with(
        &features_on_input(&ck, &dir, &["--layer", "layer9"]),
        &["no layer 'layer9'", "layer4", "penultimate"],
    );
    expect_error_with(
        &features_on_input(&ck, &dir, &["--mean", "0.5,0.5"]),
        &["--mean has 2 values", "3 input channels"],
    );
    expect_error_with(
        &features_on_input(&ck, &dir, &["--std", "0"]),
        &["--std values must be positive"],
    );
    expect_error_with(
        &features(&ck, "builtin", &dir, &["--class-names", "a,b"]),
        &["2 class names", "10 outputs"],
    );
    expect_error_with(
        &features(&ck, "builtin", &dir, &["--split", "train"]),
        &["only the test split"],
    );
    expect_error_with(
        &features(&ck, "builtin:mnist", &dir, &[]),
        &["unknown builtin dataset 'builtin:mnist'"],
    );
    expect_error_with(
        &semcon([
            "features",
            "-c",
            &s(&ck),
            "--out",
            &s(&dir.join("o.npz")),
            "--device",
            "cuda:x",
        ]),
        &["invalid device 'cuda:x'"],
    );
    let cifar = s(&dataset_fixture("cifar10"));
    expect_error_with(
        &features(&ck, &format!("{cifar}:colour"), &dir, &[]),
        &[":colour", "grayscale", "3 channels"],
    );
    let folder = s(&dataset_fixture("folder"));
    expect_error_with(
        &features(&r50(), &folder, &dir, &["--input-size", "0"]),
        &["0x0", "at least 1"],
    );
    expect_error_with(
        &features(&r50(), &folder, &dir, &["--input-size", "ax3"]),
        &["invalid --input-size 'ax3'"],
    );
}

#[test]
fn non_finite_or_zero_flag_values() {
    let dir = tmp_dir("err_flag_values");
    let ck = model_fixture("resnet18_cifar.safetensors");
    for (flag, value, needle) in [
        ("--mean", "nan", "--mean values must be finite, got NaN"),
        (
            "--mean",
            "0.5,inf,0.5",
            "--mean values must be finite, got inf",
        ),
        ("--std", "inf", "--std values must be finite, got inf"),
    ] {
        let arg = format!("{flag}={value}");
        expect_error_with(&features_on_input(&ck, &dir, &[&arg]), &[needle]);
    }
    let out = s(&dir.join("t.safetensors"));
    let train = ["train", "-d", "builtin", "--samples", "8", "--out", &out];
    expect_error_with(
        &semcon([&train[..], &["--width", "0", "--device", "cpu"]].concat()),
        &["--width must be at least 1"],
    );
    for (flag, needle) in [
        ("--classes", "--classes must be at least 1"),
        ("--width", "--width must be at least 1"),
        ("--batch", "--batch must be at least 1"),
    ] {
        let r = semcon(["bench", flag, "0", "--iters", "1", "--warmup", "0"]);
        expect_error_with(&r, &[needle]);
    }
    // explore checks its flags before loading anything (or needing a terminal)
    for secs in ["nan", "inf", "0"] {
        let r = semcon(["explore", "--samples", "50", "--demo", "--demo-secs", secs]);
        expect_error_with(&r, &["--demo-secs must be a positive finite number"]);
    }
    // without a command, semcon takes explore's flags (`semcon --demo`)
    let r = semcon(["--samples", "50", "--demo", "--demo-secs", "nan"]);
    expect_error_with(&r, &["--demo-secs must be a positive finite number"]);
    let r = semcon(["--demo", "eval"]);
    assert_eq!(
        r.code,
        Some(2),
        "explorer flags with a command: {}",
        r.stderr
    );
    // the same range check on PGD eps as eval and attack
    let r = semcon(["explore", "--samples", "50", "--pgd=-8/255,2"]);
    expect_usage_error(&r, "outside [0,1]");
}

/// Sidecar values that do not fit the checkpoint name the sidecar, not a flag
/// that was never given; a flag still wins over the sidecar.
#[test]
fn sidecar_values_that_do_not_fit() {
    let dir = tmp_dir("err_sidecar");
    let ck = dir.join("m.safetensors");
    std::fs::copy(model_fixture("resnet18_cifar.safetensors"), &ck).unwrap();
    let sc = dir.join("m.json");
    for (json, needles) in [
        (
            r#"{"mean": [0.5, 0.5]}"#,
            vec!["mean has 2 values", "3 input channels"],
        ),
        (
            r#"{"std": [0, 1, 1]}"#,
            vec!["std values must be positive, got 0"],
        ),
        (
            r#"{"mean": [1e39]}"#,
            vec!["mean values must be finite, got inf"],
        ),
        (
            r#"{"input_size": [0, 0]}"#,
            vec!["input_size is 0x0", "at least 1"],
        ),
        (
            r#"{"class_names": ["a", "b"]}"#,
            vec!["class_names has 2 names", "10 outputs"],
        ),
    ] {
        std::fs::write(&sc, json).unwrap();
        let mut all = vec![s(&sc)];
        all.extend(needles.iter().map(|n| n.to_string()));
        let all: Vec<&str> = all.iter().map(|v| v.as_str()).collect();
        let line = expect_error_with(&features_on_input(&ck, &dir, &[]), &all);
        assert!(!line.contains("--"), "blames a flag: {line}");
    }
    std::fs::write(&sc, r#"{"mean": [0.5, 0.5]}"#).unwrap();
    let r = features_on_input(&ck, &dir, &["--mean", "0.5"]);
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn bad_input_arrays() {
    let dir = tmp_dir("err_input");
    let ck = model_fixture("resnet18_cifar.safetensors");
    let run = |input: &Path| {
        semcon([
            "features",
            "--checkpoint",
            &s(&ck),
            "--input",
            &s(input),
            "--out",
            &s(&dir.join("o.npz")),
            "--device",
            "cpu",
        ])
    };
    expect_error_with(&run(&dir.join("none.npy")), &["none.npy", "no such file"]);
    expect_error_with(
        &run(&model_fixture("resnet18_cifar_logits.npy")),
        &["NCHW", "[4, 10]"],
    );
    let p = dir.join("range.npy");
    Tensor::full(2f32, (1, 3, 4, 4), &Device::Cpu)
        .unwrap()
        .write_npy(&p)
        .unwrap();
    expect_error_with(&run(&p), &["[0,1]"]);
    let p = dir.join("zero.npy");
    Tensor::zeros((1, 3, 0, 4), candle_core::DType::F32, &Device::Cpu)
        .unwrap()
        .write_npy(&p)
        .unwrap();
    expect_error_with(&run(&p), &["zero.npy", "holds no pixels", "[1, 3, 0, 4]"]);
}

// ------------------------------------------------------------ attack / train values
/// `--samples` means the same with `--input` as with `--dataset` (a seeded
/// subset, at least 1) in features, attack and perturb; attack's `--labels`
/// belongs to `--input`.
#[test]
fn samples_and_labels_with_input_arrays() {
    let dir = tmp_dir("err_input_samples");
    let ck = s(&model_fixture("resnet18_cifar.safetensors"));
    let input = s(&model_fixture("resnet18_cifar_input.npy"));
    let y = dir.join("y.npy");
    Tensor::new(&[0i64, 1, 2, 3], &Device::Cpu)
        .unwrap()
        .write_npy(&y)
        .unwrap();
    let y = s(&y);
    let (f_out, p_out) = (s(&dir.join("f.npz")), s(&dir.join("p.npy")));
    let features = ["features", "-c", &ck, "--input", &input, "--out", &f_out];
    let attack = ["attack", "-c", &ck, "--input", &input, "--labels", &y];
    let attack = [&attack[..], &["--iters", "1"]].concat();
    let perturb = [
        "perturb",
        "--input",
        &input,
        "--perturb",
        "hue",
        "--level",
        "1",
    ];
    let perturb = [&perturb[..], &["--out", &p_out]].concat();
    for args in [&features[..], &attack, &perturb] {
        let r = semcon([args, &["--samples", "0"]].concat());
        expect_error_with(&r, &["--samples must be at least 1"]);
        assert!(!Path::new(&p_out).exists());
    }
    semcon_ok([&features[..], &["--samples", "2"]].concat());
    assert_eq!(read_npz(Path::new(&f_out))["features"].dims(), &[2, 10]);
    let r = semcon_ok([&attack[..], &["--samples", "3"]].concat());
    assert!(r.stdout.contains("(3 samples"), "{}", r.stdout);
    semcon_ok([&perturb[..], &["--samples", "2"]].concat());
    assert_eq!(read_npy(Path::new(&p_out)).shape[0], 2);
    // --labels without --input would be ignored: a usage error naming --input
    let r = semcon(["attack", "-c", &ck, "--labels", &y, "--samples", "2"]);
    expect_usage_error(&r, "not provided: --input <INPUT>");
}

/// Usage errors (clap): one `error:` line, exit code 2, no panic.
fn expect_usage_error(r: &Run, needle: &str) {
    assert_eq!(r.code, Some(2), "stderr: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {}", r.stderr);
    assert!(
        lines[0].starts_with("error:") && lines[0].contains(needle),
        "{}",
        lines[0]
    );
}

/// Output paths are checked before any work (each run names a dataset or
/// features file that does not exist, which would be the error otherwise).
#[test]
fn output_paths_are_checked_first() {
    let dir = tmp_dir("err_out_paths");
    let ck = s(&model_fixture("resnet18_cifar.safetensors"));
    let missing = s(&dir.join("no-such-data.npz"));
    let none = dir.join("none");
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    let (eval, attack) = (["eval", "-c", &ck], ["attack", "-c", &ck]);
    let features = ["features", "-c", &ck];
    let perturb = ["perturb", "--perturb", "hue", "--level", "1"];
    let not_there = format!("directory {} does not exist", s(&none));
    let json_dir = dir.join("report.json");
    std::fs::create_dir_all(&json_dir).unwrap();
    let cases: [(&[&str], PathBuf, &str); 9] = [
        (&eval, none.join("r.json"), &not_there),
        (&eval, dir.join("r.txt"), "expected a .json file"),
        (&attack, none.join("a.npy"), &not_there),
        (&attack, dir.join("a.png"), "expected a .npy file"),
        (&features, dir.join("o.npy"), "expected a .npz file"),
        (&features, file.join("o.npz"), "file is not a directory"),
        (&["train"], none.join("m.safetensors"), &not_there),
        (&perturb, none.join("p.png"), &not_there),
        (&eval, json_dir, "is a directory"),
    ];
    for (cmd, out, needle) in cases {
        let out = s(&out);
        let r = semcon([cmd, &["-d", &missing, "--out", &out]].concat());
        expect_error_with(&r, &[&format!("--out {out}"), needle]);
    }
    let k = s(&none.join("k.npy"));
    let r = semcon(["kstar", "--features", &missing, "--out", &k]);
    expect_error_with(&r, &["does not exist"]);
    let r = semcon([
        "kstar",
        "--features",
        &missing,
        "--out",
        &s(&dir.join("k.txt")),
    ]);
    expect_error_with(&r, &["expected a .npy file"]);
    assert!(!none.exists());
}

/// A write whose final rename fails leaves no temporary file behind (the
/// rename onto a non-empty directory fails after the temporary file is written).
#[test]
fn failed_writes_leave_no_temporary_files() {
    use semcon::model::{ResNetConfig, Stem};
    let dir = tmp_dir("err_tmp_files");
    let out = dir.join("f.npz");
    std::fs::create_dir_all(out.join("x")).unwrap();
    let t = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
    let arrays = [("features", semcon::data::npyz::NpyArray::Tensor(&t))];
    let e = semcon::data::npyz::save_npz(&out, &arrays).unwrap_err();
    assert!(format!("{e:#}").contains("cannot write"), "{e:#}");
    assert!(!dir.join("f.npz.tmp").exists());
    let out = dir.join("m.safetensors");
    std::fs::create_dir_all(out.join("x")).unwrap();
    let cfg = ResNetConfig::named("resnet18", Stem::Cifar, 2, 1, 3).unwrap();
    let tr = semcon::train::Trainer::new(cfg, vec![0.0], vec![1.0], 0, &Device::Cpu).unwrap();
    assert!(tr.save(&out, &Default::default()).is_err());
    assert!(!dir.join("m.safetensors.tmp").exists());
    assert!(!dir.join("m.json.tmp").exists());
}

/// kstar checks --class-names against the labels as eval checks them
/// against the model (every label needs a name).
#[test]
fn kstar_class_names_that_do_not_cover_the_labels() {
    let npz = s(&fixture("kstar/high.npz")); // labels 0..6
    let kstar = ["kstar", "--features", &npz, "--device", "cpu"];
    let r = semcon([&kstar[..], &["--class-names", "a,b"]].concat());
    expect_error_with(
        &r,
        &["2 class names given", "labels go up to 6", "7 classes"],
    );
    let r = semcon_ok([&kstar[..], &["--class-names", "a,b,c,d,e,f,g"]].concat());
    assert!(r.stdout.contains(" g "), "{}", r.stdout);
}

/// Usage errors keep clap's details on their one line: which arguments are
/// missing, the possible values, the "similar argument" tip.
#[test]
fn usage_errors_name_the_argument() {
    let r = semcon(["features", "-c", "X", "--samples", "50"]);
    expect_usage_error(&r, "required arguments were not provided: --out <OUT>");
    let r = semcon(["perturb", "--perturb", "hue"]);
    expect_usage_error(&r, "not provided: --level <LEVEL>, --out <OUT>");
    let r = semcon(["eval", "--format", "xml"]);
    expect_usage_error(&r, "'--format <FORMAT>' [possible values: json, table]");
    let r = semcon(["eval", "--sampels", "3"]);
    expect_usage_error(&r, "similar argument exists: '--samples'");
    for r in [&r, &semcon(["explor"])] {
        assert!(!r.stderr.contains("Usage:"), "{}", r.stderr);
    }
}

#[test]
fn eps_outside_unit_interval() {
    let ck = model_fixture("resnet18_cifar.safetensors");
    for bad in ["2", "-1/255", "300/255"] {
        let bad = format!("--eps={bad}");
        let r = semcon([
            "attack",
            "-c",
            &s(&ck),
            &bad,
            "--samples",
            "4",
            "--device",
            "cpu",
        ]);
        expect_usage_error(&r, "outside [0,1]");
    }
    let r = semcon([
        "eval",
        "-c",
        &s(&ck),
        "--pgd",
        "8/255,1.5",
        "--samples",
        "4",
        "--device",
        "cpu",
    ]);
    expect_usage_error(&r, "outside [0,1]");
}

#[test]
fn nan_loss_stops_training_naming_the_step() {
    let dir = tmp_dir("err_nan_loss");
    let out = dir.join("m.safetensors");
    let r = semcon([
        "train",
        "--dataset",
        "builtin:fashion-mnist",
        "--split",
        "test",
        "--samples",
        "64",
        "--width",
        "2",
        "--epochs",
        "3",
        "--batch",
        "32",
        "--variant",
        "continuity",
        "--alpha",
        "1e300",
        "--out",
        &s(&out),
        "--device",
        "cpu",
    ]);
    let line = expect_error_with(&r, &["epoch 1, step 1", "no checkpoint was written"]);
    assert!(line.contains("NaN") || line.contains("inf"), "{line}");
    // it said no checkpoint was written: none is, and no temporary file is left
    assert!(
        !out.exists(),
        "a checkpoint was written after a failure in epoch 1"
    );
    assert!(!dir.join("m.safetensors.tmp").exists());
}

/// The device flag in a build without CUDA (CI's): `cuda` is a clear error,
/// an explicit `auto` takes the CPU with one notice line, no flag is silent.
#[cfg(not(feature = "cuda"))]
#[test]
fn device_choice_without_cuda() {
    let dir = tmp_dir("err_device");
    let ck = model_fixture("resnet18_cifar.safetensors");
    let run = |device: Option<&str>| {
        let flag: Vec<&str> = device.map(|d| vec!["--device", d]).unwrap_or_default();
        semcon(features_on_input_args(&ck, &dir, &flag))
    };
    expect_error_with(&run(Some("cuda")), &["device 'cuda'", "built without CUDA"]);
    let auto = run(Some("auto"));
    assert!(auto.ok, "{}", auto.stderr);
    let notices: Vec<&str> = auto
        .stderr
        .lines()
        .filter(|l| l.starts_with("notice:"))
        .collect();
    assert_eq!(notices.len(), 1, "{}", auto.stderr);
    assert!(notices[0].contains("no CUDA") && notices[0].contains("running on the CPU"));
    let quiet = run(None);
    assert!(quiet.ok, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("notice:"), "{}", quiet.stderr);
}

/// `semcon train` reads the train split unless told otherwise (like
/// torchvision's `train=True`); builtin:fashion-mnist has none and says where
/// to get it. Off a terminal (here: piped) every epoch is still reported.
/// Evaluation after training never reports the training images as held out.
#[test]
fn train_split_default_and_held_out_evaluation() {
    let dir = tmp_dir("err_train_split");
    let out = s(&dir.join("m.safetensors"));
    let tiny = [
        "--width", "2", "--epochs", "2", "--batch", "16", "--device", "cpu",
    ];
    let run = |args: &[&str]| semcon([&["train", "--out", &out][..], &tiny, args].concat());
    expect_error_with(
        &run(&["-d", "builtin", "--samples", "32"]),
        &["ships only the test split", "--split train"],
    );

    // A dataset without splits (x/y): trained on, but not "evaluated" on itself.
    let npz = s(&fixture("eval/fmnist_colour120.npz"));
    let r = run(&["-d", &npz, "--samples", "48"]);
    assert!(r.ok, "{}", r.stderr);
    for epoch in ["epoch 1: loss", "epoch 2: loss"] {
        assert!(
            r.stderr.contains(epoch),
            "no '{epoch}' off a terminal: {}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("has no separate test split"),
        "{}",
        r.stderr
    );
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    assert!(sidecar["metrics"]["train"].is_object());
    assert!(sidecar["metrics"]["test"].is_null(), "{sidecar}");
    assert_eq!(sidecar["training"]["samples"], 48);

    // Asked for explicitly, the same data is evaluated (the user's choice).
    let r = run(&["-d", &npz, "--samples", "48", "--eval-dataset", &npz]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("test accuracy"), "{}", r.stderr);
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    assert_eq!(sidecar["metrics"]["test"]["samples"], 120);

    // Training on a test split says that nothing held out was evaluated.
    let r = run(&["-d", "builtin", "--split", "test", "--samples", "32"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("trained on the test split"),
        "{}",
        r.stderr
    );
}

/// A checkpoint without a sidecar and without --mean/--std sees raw pixels:
/// said in one notice line (a torchvision model trained on normalised inputs
/// would otherwise just look bad), not when either states the normalisation.
#[test]
fn unstated_normalisation_is_noticed() {
    let dir = tmp_dir("err_norm_notice");
    let shipped = root().join("checkpoints/standard.safetensors");
    let bare = dir.join("bare.safetensors");
    std::fs::copy(&shipped, &bare).unwrap();
    let eval = |ck: &Path, extra: &[&str]| {
        let args = ["eval", "-c", &s(ck), "--samples", "8", "--perturb", "none"];
        let r = semcon([&args[..], &["--device", "cpu"], extra].concat());
        assert!(r.ok, "{}", r.stderr);
        r.stderr
    };
    let err = eval(&bare, &[]);
    let notices: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not normalised"))
        .collect();
    assert_eq!(notices.len(), 1, "{err}");
    assert!(notices[0].starts_with("notice: bare: no --mean/--std and no sidecar"));
    assert!(notices[0].contains("bare.json"), "{err}");
    assert!(!eval(&bare, &["--mean", "0.5", "--std", "0.25"]).contains("not normalised"));
    assert!(!eval(&shipped, &[]).contains("not normalised"));
}

/// Gray images given to a colour model are replicated to its channels, and
/// said (a model trained on colour images may do poorly on them).
#[test]
fn gray_data_for_a_colour_model_is_noticed() {
    let ck = s(&root().join("checkpoints/standard.safetensors"));
    let eval = |d: &str| {
        let args = [
            "eval",
            "-c",
            &ck,
            "-d",
            d,
            "--samples",
            "8",
            "--perturb",
            "none",
        ];
        let r = semcon([&args[..], &["--device", "cpu"]].concat());
        assert!(r.ok, "{}", r.stderr);
        r.stderr
    };
    let err = eval("builtin:fashion-mnist");
    assert!(
        err.lines().any(|l| l
            == "notice: builtin:fashion-mnist is gray (1 channel): replicated to the colour channels standard takes"),
        "{err}"
    );
    assert!(!eval("builtin:fashion-mnist:colour").contains("gray"));
}
