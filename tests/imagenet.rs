//! Image folders read with torchvision's eval preprocessing: pixels
//! identical to `ImageFolder` + `Resize` + `CenterCrop` on real photographs
//! in PNG and JPEG of every kind (tests/fixtures/make_folder_imagenet.py),
//! the per-class sample, presets, and bad files.

mod common;

use common::*;
use semcon::data::{self, DatasetSpec, LoadOptions};
use semcon::data::{preprocess::Preprocess, resample::Filter};
use std::path::PathBuf;

/// A random-init 1,000-class ResNet-18 (width 4), written once.
fn model_1000() -> PathBuf {
    static M: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        use semcon::model::{ResNetConfig, Stem};
        let p = tmp_dir("imagenet_model").join("r18_1000.safetensors");
        let cfg = ResNetConfig::named("resnet18", Stem::Imagenet, 4, 3, 1000).unwrap();
        let tr = semcon::train::Trainer::new(
            cfg,
            vec![0.485, 0.456, 0.406],
            vec![0.229, 0.224, 0.225],
            0,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        tr.save(&p, &Default::default()).unwrap();
        p
    })
    .clone()
}

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
        // The folders are ImageNet wnids: labels are ImageNet-1k indices
        // (tench 0, English springer 217, church 497), not ImageFolder's 0..2.
        let imagenet = [0i64, 217, 497];
        let want_y: Vec<i64> = y.iter().map(|&c| imagenet[c as usize]).collect();
        assert_eq!(
            set.labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            want_y
        );
        assert_eq!(set.class_names.len(), 1000);
        assert_eq!(set.class_names[217], "English springer");
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
    for k in [0u32, 217, 497] {
        assert_eq!(a.labels.iter().filter(|&&l| l == k).count(), 3);
    }
    assert_eq!(a.data, b.data, "same seed, same sample");
    assert_ne!(a.data, c.data, "another seed, another sample");
    // Sampling the files before decoding picks what sampling the decoded set would.
    let all = load(pre, None, 0);
    assert_eq!(all.per_class(3, 1).data, a.data);
    // So does --samples: a seeded subset of the files, the one the decoded
    // set would give (then the session's subset keeps it whole).
    let spec: DatasetSpec = tree().to_str().unwrap().parse().unwrap();
    for (n, seed) in [(5, 1), (5, 2), (1, 0)] {
        let some = data::load(
            &spec,
            &LoadOptions {
                preprocess: Some(pre),
                samples: Some(n),
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        let want = all.subset(n, seed);
        assert_eq!(some.len(), n);
        assert_eq!(
            (&some.labels, &some.data),
            (&want.labels, &want.data),
            "{n} {seed}"
        );
        assert_eq!(some.subset(n, seed).data, some.data);
    }
    // Through the command line.
    let out = tmp_dir("imagenet_pc").join("f.npz");
    semcon_ok([
        "features",
        "-c",
        model_1000().to_str().unwrap(),
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
    let model = model_1000();
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
    // A JPEG whose header libjpeg rejects (a fatal error inside the C decoder).
    let mut huge = good.clone();
    let sof = huge.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    huge[sof + 5..sof + 9].fill(0xFF);
    std::fs::write(dir.join("n03028079/huge.jpg"), &huge).unwrap();
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
    assert!(r.stderr.contains("skipped 3 image file(s)"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn labels_beyond_the_model_are_refused_before_decoding() {
    // A 7-class model on a folder of ImageNet wnids (labels 0, 217, 497).
    let m = model_fixture("resnet18_imagenet.safetensors");
    let out = tmp_dir("imagenet_labels").join("f.npz");
    let r = semcon([
        "features",
        "-c",
        m.to_str().unwrap(),
        "-d",
        tree().to_str().unwrap(),
        "--resize",
        "48",
        "--crop",
        "40",
        "--layer",
        "penultimate",
        "--out",
        out.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["label 217", "7 classes", "nothing was decoded"]);
}

#[test]
fn class_names_from_a_file() {
    let dir = tmp_dir("imagenet_names");
    let m = model_fixture("resnet18_imagenet.safetensors");
    let lines = dir.join("names.txt");
    std::fs::write(&lines, "tench\ngoldfish\nshark\nray\nhen\nostrich\nrobin\n").unwrap();
    let json = dir.join("names.json");
    std::fs::write(&json, r#"["t","g","s","r","h","o","rb"]"#).unwrap();
    for (f, first) in [(&lines, "tench"), (&json, "\"t\"")] {
        let r = semcon_ok([
            "info",
            m.to_str().unwrap(),
            "--class-names",
            f.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert!(r.stdout.contains(first), "{}", r.stdout);
    }
    let short = dir.join("short.txt");
    std::fs::write(&short, "a\nb\n").unwrap();
    let r = semcon([
        "info",
        m.to_str().unwrap(),
        "--class-names",
        short.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["2 class names", "7 outputs"]);
}

/// `eval` gives each model the preprocessing its sidecar asks for; flags
/// set one for all; the explorer's single set refuses the mix by name.
#[test]
fn each_model_gets_its_sidecars_preprocessing() {
    let dir = tmp_dir("imagenet_each");
    let mk = |name: &str, sidecar: &str| {
        let p = dir.join(format!("{name}.safetensors"));
        std::fs::copy(model_1000(), &p).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), sidecar).unwrap();
        p
    };
    let a = mk("a", r#"{"resize_size": 48, "crop_size": 40}"#);
    let b = mk(
        "b",
        r#"{"resize_size": 56, "crop_size": 40, "interpolation": "bicubic"}"#,
    );
    let t = tree();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "eval",
            "-c",
            a.to_str().unwrap(),
            "-c",
            b.to_str().unwrap(),
            "-d",
            t.to_str().unwrap(),
            "--perturb",
            "none",
            "--format",
            "json",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let r = semcon_ok(args(&[]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["split"], "test", "the report names the split");
    let pre = |i: usize| v["models"][i]["preprocessing"].clone();
    assert_eq!(pre(0)["resize"], 48);
    assert_eq!(pre(0)["filter"], "bilinear");
    assert_eq!(pre(1)["resize"], 56);
    assert_eq!(pre(1)["filter"], "bicubic");
    let r = semcon_ok(args(&["--resize", "44", "--crop", "40"]));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for i in 0..2 {
        assert_eq!(v["models"][i]["preprocessing"]["resize"], 44);
    }
    // The explorer shows every model on one set.
    let r = semcon([
        "explore",
        "-c",
        a.to_str().unwrap(),
        "-c",
        b.to_str().unwrap(),
        "-d",
        t.to_str().unwrap(),
    ]);
    expect_error_with(&r, &["different preprocessing", "--resize"]);
}

/// Decoding only a window of a JPEG (rows skipped above, never decoded
/// below, columns cropped) gives the pixels of the whole decode: every
/// fixture JPEG (4:2:0, 4:2:2, 4:4:4, gray, CMYK, progressive,
/// arithmetic-coded, odd sizes), windows at random and at the edges. Set
/// SEMCON_MORE_JPEGS=DIR to check every JPEG under DIR as well.
#[test]
fn a_window_of_a_jpeg_decodes_as_the_whole() {
    use semcon::data::{jpeg, resample::Window};
    let mut files = Vec::new();
    let mut roots = vec![common::fixture("datasets"), common::fixture("fuzz")];
    roots.extend(std::env::var_os("SEMCON_MORE_JPEGS").map(PathBuf::from));
    fn walk(d: &std::path::Path, out: &mut Vec<PathBuf>) {
        for p in dir_files(d) {
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .is_some_and(|e| e == "jpg" || e == "jpeg" || e == "JPEG")
            {
                out.push(p);
            }
        }
    }
    for root in roots {
        walk(&root, &mut files);
    }
    assert!(files.len() >= 18, "{files:?}");
    let mut seed = 11u64;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % m.max(1)
    };
    let (mut windows, mut smaller) = (0, 0);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let Ok((w, h, whole)) = jpeg::decode_rgb(&bytes, u64::MAX) else {
            continue; // the fuzz seeds include files that are not valid
        };
        let mut wants = vec![
            Window::whole(w, h),
            Window {
                x: 0,
                y: 0,
                w: 1,
                h: 1,
            },
            Window {
                x: w - 1,
                y: h - 1,
                w: 1,
                h: 1,
            },
            Window {
                x: w / 3,
                y: h / 4,
                w: (w / 3).max(1),
                h: (h / 2).max(1),
            },
        ];
        for _ in 0..6 {
            let (ww, wh) = (1 + next(w), 1 + next(h));
            wants.push(Window {
                x: next(w - ww + 1),
                y: next(h - wh + 1),
                w: ww,
                h: wh,
            });
        }
        for want in wants {
            let d = jpeg::decode_window(&bytes, u64::MAX, |_, _| Ok(want)).unwrap();
            assert_eq!((d.width, d.height), (w, h));
            assert!(
                d.window.contains(&want),
                "{f:?}: {:?} misses {want:?}",
                d.window
            );
            let expect = semcon::data::resample::crop(
                &whole,
                (w, h, 3),
                (d.window.x, d.window.y),
                (d.window.w, d.window.h),
            );
            assert!(
                d.rgb == expect,
                "{f:?}: window {want:?} (decoded {:?}) differs",
                d.window
            );
            windows += 1;
            smaller += usize::from(d.window.w * d.window.h < w * h);
        }
    }
    // Most windows really were decoded in part.
    assert!(smaller * 2 > windows, "{smaller} of {windows}");
}
