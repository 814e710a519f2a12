//! Image folders read with torchvision's eval preprocessing: pixels
//! identical to `ImageFolder` + `Resize` + `CenterCrop` on real photographs
//! in PNG and JPEG of every kind (tests/fixtures/make_folder_imagenet.py),
//! the per-class sample, presets, and bad files.

mod common;

use common::*;
use semcon::data::resample::{Filter, Preprocess};
use semcon::data::{self, DatasetSpec, LoadOptions};
use std::path::PathBuf;

fn tree() -> PathBuf {
    dataset_fixture("imagenet_like").join("tree")
}

fn load(pre: Preprocess, per_class: Option<usize>, seed: u64) -> semcon::data::ImageSet {
    let spec: DatasetSpec = tree().to_str().unwrap().parse().unwrap();
    let opts = LoadOptions {
        preprocess: Some(pre),
        per_class,
        seed,
        ..Default::default()
    };
    data::load(&spec, &opts).unwrap()
}

#[test]
fn pixels_equal_torchvision_imagefolder() {
    let npz = semcon::data::npyz::Npz::open(&dataset_fixture("imagenet_like").join("expected.npz"))
        .unwrap();
    let files = npz.get_strings("files").unwrap().unwrap();
    let y: Vec<i64> = npz.get("y").unwrap().unwrap().to_vec1().unwrap();
    for (name, filter) in [
        ("bilinear", Filter::Bilinear),
        ("bicubic", Filter::Bicubic),
        ("nearest", Filter::Nearest),
    ] {
        let set = load(Preprocess::new(48, 40, filter).unwrap(), None, 0);
        assert_eq!((set.channels, set.height, set.width), (3, 40, 40));
        assert_eq!(set.labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), y);
        let want: Vec<u8> = npz
            .get(&format!("x_{name}"))
            .unwrap()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let l = set.image_len();
        for (i, f) in files.iter().enumerate() {
            let got: Vec<u8> = set
                .image(i)
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect();
            let diff = got
                .iter()
                .zip(&want[i * l..(i + 1) * l])
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                diff, 0,
                "{name}: {f}: {diff} values differ from torchvision"
            );
        }
    }
}

#[test]
fn per_class_sample_is_seeded_and_stratified() {
    let pre = Preprocess::new(48, 40, Filter::Bilinear).unwrap();
    let a = load(pre, Some(3), 1);
    let b = load(pre, Some(3), 1);
    let c = load(pre, Some(3), 2);
    assert_eq!(a.len(), 9);
    for k in 0..3u32 {
        assert_eq!(a.labels.iter().filter(|&&l| l == k).count(), 3);
    }
    assert_eq!(a.data, b.data, "same seed, same sample");
    assert_ne!(a.data, c.data, "another seed, another sample");
    // Through the command line.
    let out = tmp_dir("imagenet_pc").join("f.npz");
    semcon_ok([
        "features",
        "-c",
        model_fixture("resnet18_imagenet.safetensors")
            .to_str()
            .unwrap(),
        "-d",
        tree().to_str().unwrap(),
        "--preset",
        "imagenet",
        "--resize",
        "48",
        "--crop",
        "40",
        "--per-class",
        "2",
        "--layer",
        "penultimate",
        "--out",
        out.to_str().unwrap(),
    ]);
    let f = read_npz(&out);
    assert_eq!(f["features"].dims()[0], 6, "2 images of each of 3 classes");
}

#[test]
fn bad_preprocessing_and_bad_files_are_named() {
    let model = model_fixture("resnet18_imagenet.safetensors");
    let m = model.to_str().unwrap();
    let t = tree();
    let d = t.to_str().unwrap();
    let out = tmp_dir("imagenet_bad").join("f.npz");
    let o = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec!["features", "-c", m, "--layer", "penultimate", "--out", o];
        a.extend_from_slice(extra);
        semcon(a)
    };
    expect_error_with(
        &run(&["-d", d, "--resize", "40", "--crop", "48"]),
        &["--crop 48", "--resize 40"],
    );
    expect_error_with(&run(&["-d", d, "--crop", "48"]), &["--crop", "--resize"]);
    expect_error_with(
        &run(&["-d", d, "--preset", "resnet9000"]),
        &["unknown preset", "resnet50"],
    );

    // A truncated JPEG and a text file named .jpg: named, or skipped and counted.
    let dir = tmp_dir("imagenet_bad_tree");
    copy_dir(&t, &dir);
    let good = std::fs::read(t.join("n01440764/a_q75.jpg")).unwrap();
    std::fs::write(dir.join("n01440764/cut.jpg"), &good[..good.len() * 2 / 3]).unwrap();
    std::fs::write(dir.join("n02102040/notes.jpg"), b"not an image at all").unwrap();
    let dd = dir.to_str().unwrap();
    expect_error_with(
        &run(&["-d", dd, "--resize", "48", "--crop", "40"]),
        &["cut.jpg", "truncated", "--skip-bad-images"],
    );
    let r = run(&[
        "-d",
        dd,
        "--resize",
        "48",
        "--crop",
        "40",
        "--skip-bad-images",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("skipped 2 image file(s)"), "{}", r.stderr);
}
