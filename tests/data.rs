//! Dataset readers against the arrays numpy / torchvision produce from the same
//! files (tests/fixtures/make_datasets.py), the shipped Fashion-MNIST test set,
//! seeded subsets and the colour-shift split.

mod common;

use common::*;
use semcon::data::{self, colour, DatasetSpec, ImageSet, LoadOptions, Source, Split};
use std::path::Path;

fn load_with(spec: &str, split: Split) -> ImageSet {
    let spec: DatasetSpec = spec.parse().unwrap();
    let opts = LoadOptions {
        split,
        ..Default::default()
    };
    data::load(&spec, &opts).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn load_path(p: &Path, split: Split) -> ImageSet {
    load_with(p.to_str().unwrap(), split)
}

/// The set equals the expected arrays bit for bit (uint8 sources).
#[track_caller]
fn assert_matches_expected(set: &ImageSet, name: &str) {
    let (shape, x, y) = expected_dataset(name);
    assert_eq!(
        [set.len(), set.channels, set.height, set.width],
        [shape[0], shape[1], shape[2], shape[3]],
        "{name}: shape"
    );
    assert_eq!(set.labels, y, "{name}: labels");
    assert_exact(&set.data.to_f32(), &x, name);
}

fn cifar10_names() -> Vec<String> {
    data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn cifar10_directory_both_splits() {
    let dir = dataset_fixture("cifar10");
    let test = load_path(&dir, Split::Test);
    assert_matches_expected(&test, "cifar10_test");
    assert_eq!(test.class_names, cifar10_names());
    assert_eq!(test.norm, data::Family::Cifar10.norm());
    let train = load_path(&dir, Split::Train);
    assert_matches_expected(&train, "cifar10_train");
    assert_eq!(train.len(), 10);
}

#[test]
fn cifar10_single_file() {
    let set = load_path(&dataset_fixture("cifar10/test_batch.bin"), Split::Test);
    assert_matches_expected(&set, "cifar10_test");
    assert_eq!(set.class_names, cifar10_names());
    let set = load_path(&dataset_fixture("cifar10/data_batch_3.bin"), Split::Test);
    assert_eq!(set.len(), 2);
}

#[test]
fn cifar100_directory_fine_labels() {
    let dir = dataset_fixture("cifar100");
    for (split, name) in [
        (Split::Test, "cifar100_test"),
        (Split::Train, "cifar100_train"),
    ] {
        let set = load_path(&dir, split);
        assert_matches_expected(&set, name);
        assert!(
            set.labels.iter().all(|&y| y >= 20),
            "fine labels, not coarse"
        );
        assert_eq!(set.num_classes(), 100);
        assert_eq!(set.class_names[0], "fine_00");
        assert_eq!(set.class_names[99], "fine_99");
        assert_eq!(set.norm, data::Family::Cifar100.norm());
    }
}

#[test]
fn cifar100_single_file_is_told_by_record_size() {
    let set = load_path(&dataset_fixture("cifar100/train.bin"), Split::Test);
    assert_matches_expected(&set, "cifar100_train");
    assert_eq!(set.num_classes(), 100);
    let set = load_path(&dataset_fixture("cifar100/test.bin"), Split::Test);
    assert_matches_expected(&set, "cifar100_test");
}

#[test]
fn idx_directory_plain_and_gzip() {
    let dir = dataset_fixture("idx");
    let test = load_path(&dir, Split::Test); // plain t10k-*
    assert_matches_expected(&test, "idx_test");
    assert_eq!((test.height, test.width), (6, 7));
    let train = load_path(&dir, Split::Train); // gzip-ed train-*.gz
    assert_matches_expected(&train, "idx_train");
    assert_eq!(train.num_classes(), 10);
}

#[test]
fn idx_images_file_finds_its_labels() {
    let set = load_path(&dataset_fixture("idx/t10k-images-idx3-ubyte"), Split::Test);
    assert_matches_expected(&set, "idx_test");
    let set = load_path(
        &dataset_fixture("idx/train-images-idx3-ubyte.gz"),
        Split::Test,
    );
    assert_matches_expected(&set, "idx_train");
}

#[test]
fn npz_uint8_nhwc_gray_and_float_nchw() {
    for (file, name, c) in [
        ("u8_nhwc.npz", "npz_u8_nhwc", 3),
        ("u8_gray.npz", "npz_u8_gray", 1),
        ("f32_nchw.npz", "npz_f32_nchw", 3),
    ] {
        let set = load_path(&dataset_fixture(&format!("npz/{file}")), Split::Test);
        assert_matches_expected(&set, name);
        assert_eq!(set.channels, c, "{file}");
        assert_eq!((set.height, set.width), (6, 7), "{file}");
        let k = *set.labels.iter().max().unwrap() as usize + 1;
        assert_eq!(set.num_classes(), k, "{file}");
    }
}

/// Image folder: PNGs of the first image's size match torchvision exactly;
/// JPEGs within decoder differences; resized images loosely (and by shape).
#[test]
fn image_folder_like_torchvision() {
    let set = load_path(&dataset_fixture("folder"), Split::Test);
    let (shape, x, y) = expected_dataset("folder");
    let kind = read_npy(&dataset_fixture("expected/folder_kind.npy")).i64();
    assert_eq!(
        [set.len(), set.channels, set.height, set.width],
        [shape[0], shape[1], shape[2], shape[3]]
    );
    assert_eq!((set.height, set.width), (10, 12));
    assert_eq!(set.labels, y);
    assert_eq!(set.class_names, ["cat", "dog", "frog"]);
    let l = set.image_len();
    for (i, k) in kind.iter().enumerate() {
        let (got, want) = (set.image(i), &x[i * l..(i + 1) * l]);
        let what = format!("folder image {i} (kind {k})");
        let mean = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / l as f32;
        if *k == 0 {
            assert_exact(&got, want, &what);
        } else {
            // JPEG: libjpeg (PIL) and the image crate decode within a few
            // levels; resized: image's Triangle filter vs PIL's BILINEAR
            // (measured: at most 4 levels, 0.4 on average)
            assert!(mean < 1.5 / 255.0, "{what}: mean difference {mean}");
            assert_close(&got, want, 8.0 / 255.0, &what);
        }
    }
}

/// torchvision's ImageFolder itself as the reference (make_folder_tv.py):
/// images at several depths of each class folder, in sorted(os.walk())
/// order, in every lossless format of IMG_EXTENSIONS (PNG, BMP, PPM, PGM,
/// TIFF, WebP; RGB, gray, RGBA, palette), a notes.txt ignored: same samples
/// in the same order, same labels, same pixels bit for bit.
#[test]
fn image_folder_walks_and_decodes_like_torchvision_image_folder() {
    let set = load_path(&dataset_fixture("folder_tv"), Split::Test);
    let (shape, x, y) = expected_dataset("folder_tv");
    let files = std::fs::read_to_string(dataset_fixture("expected/folder_tv_files.txt")).unwrap();
    let files: Vec<&str> = files.lines().collect();
    assert_eq!(set.class_names, ["a_class", "b-class"]);
    assert_eq!(set.len(), files.len(), "samples: torchvision has {files:?}");
    assert_eq!(
        [set.len(), set.channels, set.height, set.width],
        [shape[0], shape[1], shape[2], shape[3]]
    );
    assert_eq!(set.labels, y);
    let l = set.image_len();
    for (i, f) in files.iter().enumerate() {
        assert_exact(
            &set.image(i),
            &x[i * l..(i + 1) * l],
            &format!("sample {i} ({f})"),
        );
    }
}

/// ImageNet's layout: train/ and val/ (no test/): the test split reads val/.
#[test]
fn image_folder_with_train_and_val_subfolders() {
    let dir = tmp_dir("data_folder_val");
    copy_dir(&dataset_fixture("folder"), &dir.join("train"));
    std::fs::create_dir_all(dir.join("val/cat")).unwrap();
    std::fs::copy(
        dataset_fixture("folder/cat/a_rgb.png"),
        dir.join("val/cat/x.png"),
    )
    .unwrap();
    assert_eq!(load_path(&dir, Split::Test).len(), 1);
    assert_eq!(load_path(&dir, Split::Train).len(), 9);
}

#[test]
fn image_folder_resize_option_gives_the_shape() {
    let spec: DatasetSpec = dataset_fixture("folder").to_str().unwrap().parse().unwrap();
    let opts = LoadOptions {
        resize: Some((16, 20)),
        ..Default::default()
    };
    let set = data::load(&spec, &opts).unwrap();
    assert_eq!(
        (set.len(), set.channels, set.height, set.width),
        (9, 3, 16, 20)
    );
    assert_eq!(set.data.len(), 9 * 3 * 16 * 20);
    assert!(set.data.to_f32().iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn image_folder_with_train_and_test_subfolders() {
    let dir = tmp_dir("data_folder_splits");
    copy_dir(&dataset_fixture("folder"), &dir.join("train"));
    std::fs::create_dir_all(dir.join("test/cat")).unwrap();
    std::fs::create_dir_all(dir.join("test/dog")).unwrap();
    for to in ["test/dog/x.png", "test/cat/y.png"] {
        std::fs::copy(dataset_fixture("folder/cat/a_rgb.png"), dir.join(to)).unwrap();
    }
    let test = load_path(&dir, Split::Test);
    assert_eq!(test.len(), 2);
    assert_eq!(test.labels, [0, 1]);
    let train = load_path(&dir, Split::Train);
    assert_eq!(train.len(), 9);
}

// ------------------------------------------------------------ Fashion-MNIST

fn fmnist_expected() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(dataset_fixture("fashion_mnist_t10k.json")).unwrap(),
    )
    .unwrap()
}

fn u8_sum(v: &[f32]) -> u64 {
    v.iter().map(|&p| (p * 255.0).round() as u64).sum()
}

#[test]
fn builtin_fashion_mnist_matches_numpy() {
    let e = fmnist_expected();
    let set = load_with("builtin:fashion-mnist", Split::Test);
    assert_eq!(set.len() as u64, e["n"].as_u64().unwrap());
    assert_eq!(set.len(), 10000);
    assert_eq!((set.channels, set.height, set.width), (1, 28, 28));
    let mut counts = vec![0u64; 10];
    for &y in &set.labels {
        counts[y as usize] += 1;
    }
    let want: Vec<u64> = e["label_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts, want);
    assert_eq!(counts, vec![1000; 10]);
    let first: Vec<u32> = e["first_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(set.labels[..first.len()], first[..]);
    assert_eq!(set.labels[0], 9);
    // every pixel is an exact k/255
    assert!(set
        .data
        .to_f32()
        .iter()
        .all(|&p| ((p * 255.0).round() / 255.0).to_bits() == p.to_bits()));
    assert_eq!(
        u8_sum(&set.data.to_f32()),
        e["pixel_sum_u8"].as_u64().unwrap()
    );
    assert_eq!(
        u8_sum(&set.image(0)),
        e["first_image_pixel_sum_u8"].as_u64().unwrap()
    );
    assert_eq!(
        u8_sum(&set.image(9999)),
        e["last_image_pixel_sum_u8"].as_u64().unwrap()
    );
    assert_eq!(set.class_names[0], "T-shirt/top");
    assert_eq!(set.class_names[9], "Ankle boot");
    assert_eq!(set.norm, data::Family::FashionMnist.norm());
    assert_eq!(set.name, "builtin:fashion-mnist");
}

#[test]
fn builtin_has_no_train_split() {
    let spec: DatasetSpec = "builtin:fashion-mnist".parse().unwrap();
    let opts = LoadOptions {
        split: Split::Train,
        ..Default::default()
    };
    let e = data::load(&spec, &opts).unwrap_err().to_string();
    assert!(e.contains("only the test split"), "{e}");
}

#[test]
fn assets_idx_directory_equals_builtin() {
    let builtin = load_with("builtin:fashion-mnist", Split::Test);
    let dir = root().join("assets/fashion-mnist");
    let set = load_path(&dir, Split::Test);
    assert_eq!(set.labels, builtin.labels);
    assert_exact(
        &set.data.to_f32(),
        &builtin.data.to_f32(),
        "assets/fashion-mnist",
    );
    assert_eq!(
        set.class_names, builtin.class_names,
        "family told by the path"
    );
    assert_eq!(set.norm, builtin.norm);
    // the images file itself
    let set = load_path(&dir.join("t10k-images-idx3-ubyte.gz"), Split::Test);
    assert_eq!(set.labels, builtin.labels);
}

#[test]
fn dataset_spec_parsing() {
    let s: DatasetSpec = "builtin:fashion-mnist:colour".parse().unwrap();
    assert_eq!(s.source, Source::BuiltinFashionMnist);
    assert_eq!(s.colour, Some(semcon::data::Colour::Split));
    assert_eq!(s.to_string(), "builtin:fashion-mnist:colour");
    let s: DatasetSpec = "data/x.npz:color".parse().unwrap();
    assert_eq!(s.source, Source::Path("data/x.npz".into()));
    assert_eq!(s.colour, Some(semcon::data::Colour::Split));
    let s: DatasetSpec = "builtin:fashion-mnist:colour-red".parse().unwrap();
    assert_eq!(s.colour, Some(semcon::data::Colour::Red));
    assert_eq!(s.to_string(), "builtin:fashion-mnist:colour-red");
    let s: DatasetSpec = "builtin:fashion-mnist:colour-blue".parse().unwrap();
    assert_eq!(s.colour, Some(semcon::data::Colour::Blue));
    let e = "builtin:mnist"
        .parse::<DatasetSpec>()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("builtin:mnist") && e.contains("builtin:fashion-mnist"),
        "{e}"
    );
}

// ------------------------------------------------------------ subsets

#[test]
fn subset_is_seeded_sorted_and_deterministic() {
    let set = load_with("builtin:fashion-mnist", Split::Test);
    let a = set.subset(100, 7);
    let b = set.subset(100, 7);
    let c = set.subset(100, 8);
    assert_eq!(a.len(), 100);
    assert_eq!(a.labels, b.labels);
    assert_exact(&a.data.to_f32(), &b.data.to_f32(), "same seed");
    assert_ne!(a.data, c.data, "another seed, another subset");
    // the subset is made of whole images of the set, in dataset order
    let l = set.image_len();
    let mut last = None;
    for i in 0..a.len() {
        let j = (0..set.len())
            .find(|&j| set.image(j) == a.image(i) && set.labels[j] == a.labels[i])
            .unwrap();
        assert!(last.is_none_or(|p| j > p), "dataset order");
        last = Some(j);
    }
    assert_eq!(a.data.len(), 100 * l);
    // n >= len: everything
    assert_eq!(set.subset(20000, 1).len(), 10000);
}

#[test]
fn cli_samples_flag_uses_the_seeded_subset() {
    let dir = tmp_dir("data_cli_samples");
    let set = load_with("builtin:fashion-mnist", Split::Test);
    let ck = model_fixture("resnet18_cifar.safetensors");
    let mut runs = Vec::new();
    for (seed, tag) in [("0", "a"), ("0", "b"), ("3", "c")] {
        let out = dir.join(format!("{tag}.npz"));
        semcon_ok([
            "features",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--samples",
            "12",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
        ]);
        let a = read_npz(&out);
        let labels: Vec<i64> = a["labels"].to_vec1().unwrap();
        assert_eq!(a["features"].dims(), &[12, 10]);
        runs.push((labels, tensor_f32(&a["features"])));
    }
    assert_eq!(runs[0], runs[1], "same seed, same samples and features");
    let want: Vec<i64> = set.subset(12, 0).labels.iter().map(|&y| y as i64).collect();
    assert_eq!(runs[0].0, want);
    let want: Vec<i64> = set.subset(12, 3).labels.iter().map(|&y| y as i64).collect();
    assert_eq!(runs[2].0, want);
    assert_ne!(runs[0].1, runs[2].1);
}

// ------------------------------------------------------------ colour split

/// Per image: Some(true) red / Some(false) blue background, None without background.
fn background_colours(gray: &ImageSet, col: &ImageSet) -> Vec<Option<bool>> {
    let hw = gray.height * gray.width;
    (0..gray.len())
        .map(|i| {
            let g = gray.image(i);
            let c = col.image(i);
            let p = g.iter().position(|&v| v < colour::THRESHOLD)?;
            let rgb = [c[p], c[hw + p], c[2 * hw + p]];
            if rgb == colour::RED {
                Some(true)
            } else if rgb == colour::BLUE {
                Some(false)
            } else {
                panic!("image {i}: background pixel {p} is {rgb:?}, neither red nor blue")
            }
        })
        .collect()
}

#[track_caller]
fn check_colour_split(gray: &ImageSet, col: &ImageSet, want_red: bool) {
    assert_eq!((col.channels, col.height, col.width), (3, 28, 28));
    assert_eq!(col.len(), gray.len());
    assert_eq!(col.labels, gray.labels);
    let hw = gray.height * gray.width;
    let mut background = 0u64;
    for i in 0..gray.len() {
        let (g, c) = (gray.image(i), col.image(i));
        let tint = if c[..hw]
            .iter()
            .zip(g.iter())
            .any(|(&r, &v)| v < colour::THRESHOLD && r == 1.0)
        {
            colour::RED
        } else {
            colour::BLUE
        };
        for (p, &v) in g.iter().enumerate() {
            for ch in 0..3 {
                let got = c[ch * hw + p];
                if v < colour::THRESHOLD {
                    assert_eq!(
                        got, tint[ch],
                        "image {i} pixel {p}: background keeps one colour"
                    );
                } else {
                    assert_eq!(
                        got.to_bits(),
                        v.to_bits(),
                        "image {i} pixel {p}: foreground unchanged"
                    );
                }
            }
            background += (v < colour::THRESHOLD) as u64;
        }
    }
    assert_eq!(
        background,
        fmnist_expected()["background_pixels"].as_u64().unwrap()
    );
    let cols = background_colours(gray, col);
    let with_bg: Vec<bool> = cols.iter().flatten().copied().collect();
    assert!(with_bg.len() > 9900, "almost every image has background");
    let frac = with_bg.iter().filter(|&&r| r == want_red).count() as f64 / with_bg.len() as f64;
    assert!(
        (frac - 0.95).abs() < 0.01,
        "majority colour on {frac} of the images"
    );
}

#[test]
fn colour_split_test_is_mostly_blue() {
    let gray = load_with("builtin:fashion-mnist", Split::Test);
    let col = load_with("builtin:fashion-mnist:colour", Split::Test);
    assert_eq!(col.name, "builtin:fashion-mnist:colour");
    check_colour_split(&gray, &col, false);
    // seeded: the same on every load
    let again = load_with("builtin:fashion-mnist:colour", Split::Test);
    assert_exact(
        &again.data.to_f32(),
        &col.data.to_f32(),
        "colour split twice",
    );
}

#[test]
fn colour_split_train_is_mostly_red() {
    let gray = load_with("builtin:fashion-mnist", Split::Test);
    let col = colour::colour_shift(&gray, Split::Train).unwrap();
    check_colour_split(&gray, &col, true);
    let a = colour::assignment(10000, Split::Train);
    let b = colour::assignment(10000, Split::Test);
    assert_ne!(a, b);
    let red = |v: &[bool]| v.iter().filter(|&&r| r).count() as f64 / v.len() as f64;
    assert!((red(&a) - 0.95).abs() < 0.01 && (red(&b) - 0.05).abs() < 0.01);
}

#[test]
fn colour_split_needs_grayscale() {
    let set = load_path(&dataset_fixture("cifar10"), Split::Test);
    let e = colour::colour_shift(&set, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("grayscale") && e.contains("3 channels"), "{e}");
}

#[test]
fn check_labels_names_the_sample() {
    let set = load_with("builtin:fashion-mnist", Split::Test);
    assert!(set.check_labels(10).is_ok());
    let e = set.check_labels(5).unwrap_err().to_string();
    assert!(
        e.contains("label 9 of sample 0") && e.contains("5 classes"),
        "{e}"
    );
}

#[test]
fn batch_tensors_have_the_set_layout() {
    let set = load_path(&dataset_fixture("npz/u8_nhwc.npz"), Split::Test);
    let t = set.batch(1, 3, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[2, 3, 6, 7]);
    assert_exact(&tensor_f32(&t), &set.images(1, 3), "batch");
    let y = set.batch_labels(1, 3, &candle_core::Device::Cpu).unwrap();
    assert_eq!(y.to_vec1::<u32>().unwrap(), set.labels[1..3]);
}

/// Other spellings of the same arrays: np.savez_compressed (deflate), a
/// Fortran-order x with big-endian int32 y, Keras-style x_train/x_test keys.
#[test]
fn npz_compressed_fortran_bigendian_and_keras_keys() {
    for file in ["u8_nhwc_compressed.npz", "u8_nhwc_fortran_bigendian.npz"] {
        let set = load_path(&dataset_fixture(&format!("npz/{file}")), Split::Test);
        assert_matches_expected(&set, "npz_u8_nhwc");
    }
    let (_, x, y) = expected_dataset("npz_u8_nhwc");
    let l = 3 * 6 * 7;
    let p = dataset_fixture("npz/keras_split.npz");
    let train = load_path(&p, Split::Train);
    assert_eq!(train.labels, y[..3]);
    assert_exact(&train.data.to_f32(), &x[..3 * l], "keras x_train");
    let test = load_path(&p, Split::Test);
    assert_eq!(test.labels, y[3..]);
    assert_exact(&test.data.to_f32(), &x[3 * l..], "keras x_test");
}

/// The channel axis is told by its size (1 or 3): uint8 NCHW (as saved from a
/// PyTorch tensor) and float NHWC (TensorFlow) read as they are meant.
#[test]
fn npz_other_layouts() {
    use candle_core::{Device, Tensor};
    let dir = tmp_dir("data_npz_layouts");
    let (shape, x, y) = expected_dataset("npz_u8_nhwc");
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let nchw = Tensor::from_vec(x.clone(), (n, c, h, w), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(
        y.iter().map(|&v| v as i64).collect::<Vec<_>>(),
        n,
        &Device::Cpu,
    )
    .unwrap();
    let u8_nchw = (nchw.clone() * 255.0)
        .unwrap()
        .round()
        .unwrap()
        .to_dtype(candle_core::DType::U8)
        .unwrap();
    let f32_nhwc = nchw.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
    for (file, xs) in [("u8_nchw.npz", &u8_nchw), ("f32_nhwc.npz", &f32_nhwc)] {
        let p = dir.join(file);
        Tensor::write_npz(&[("x", xs), ("y", &labels)], &p).unwrap();
        let set = load_path(&p, Split::Test);
        assert_eq!((set.channels, set.height, set.width), (c, h, w), "{file}");
        assert_eq!(set.labels, y, "{file}");
        assert_exact(&set.data.to_f32(), &x, file);
    }
    // float NHW: gray
    let (shape, x, y) = expected_dataset("npz_u8_gray");
    let gray = Tensor::from_vec(x.clone(), (shape[0], shape[2], shape[3]), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(y.clone(), shape[0], &Device::Cpu).unwrap();
    let p = dir.join("f32_nhw.npz");
    Tensor::write_npz(&[("x", &gray), ("y", &labels)], &p).unwrap();
    let set = load_path(&p, Split::Test);
    assert_eq!((set.channels, set.height, set.width), (1, 6, 7));
    assert_eq!(set.labels, y, "u32 labels");
    assert_exact(&set.data.to_f32(), &x, "f32_nhw");
    // float16 NCHW: within half precision
    let (shape, x, y) = expected_dataset("npz_f32_nchw");
    let half = Tensor::from_vec(x.clone(), shape.clone(), &Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F16)
        .unwrap();
    let labels = Tensor::from_vec(y.clone(), shape[0], &Device::Cpu).unwrap();
    let p = dir.join("f16_nchw.npz");
    Tensor::write_npz(&[("x", &half), ("y", &labels)], &p).unwrap();
    let set = load_path(&p, Split::Test);
    assert_eq!((set.channels, set.height, set.width), (3, 6, 7));
    assert_close(&set.data.to_f32(), &x, 1e-3, "f16_nchw");
}

/// The roots torchvision's `download=True` leaves are found
/// (ROOT/FashionMNIST/raw, ROOT/cifar-10-batches-bin); its python (pickle)
/// CIFAR is not read, and the error says what to use instead.
#[test]
fn torchvision_download_roots() {
    let dir = tmp_dir("data_tv_roots");
    copy_dir(&dataset_fixture("idx"), &dir.join("FashionMNIST/raw"));
    copy_dir(
        &dataset_fixture("cifar10"),
        &dir.join("cifar-10-batches-bin"),
    );
    let idx = load_path(&dataset_fixture("idx"), Split::Test);
    let found = load_path(&dir, Split::Test);
    assert_eq!(
        (found.data.clone(), found.labels.clone()),
        (idx.data, idx.labels)
    );
    let found = load_path(&dir, Split::Train);
    assert_eq!(
        found.labels,
        load_path(&dataset_fixture("idx"), Split::Train).labels
    );
    std::fs::remove_dir_all(dir.join("FashionMNIST")).unwrap();
    let c10 = load_path(&dataset_fixture("cifar10"), Split::Test);
    let found = load_path(&dir, Split::Test);
    assert_eq!((found.data, found.labels), (c10.data, c10.labels));

    let py = tmp_dir("data_tv_cifar_py");
    std::fs::create_dir_all(py.join("cifar-10-batches-py")).unwrap();
    // a pickle (protocol 2), as in the real files
    std::fs::write(
        py.join("cifar-10-batches-py/test_batch"),
        b"\x80\x02}q\x00.",
    )
    .unwrap();
    for p in [
        py.clone(),
        py.join("cifar-10-batches-py"),
        py.join("cifar-10-batches-py/test_batch"),
    ] {
        let spec: DatasetSpec = p.to_str().unwrap().parse().unwrap();
        let e = data::load(&spec, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("python (pickle) version of CIFAR") && e.contains("cifar-10-binary.tar.gz"),
            "{}: {e}",
            p.display()
        );
    }
}
