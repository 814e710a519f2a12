//! Perturbations against torchvision fixtures (tests/fixtures/make_perturb.py)
//! and the defining properties of the probes; the `perturb` CLI command.

use semcon::perturb::{self, Kind};
use semcon::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

type Shape = (usize, usize, usize, usize);

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perturb")
}

fn load(name: &str) -> (Vec<f32>, Shape) {
    let p = fixture_dir().join(name);
    let t = candle_core::Tensor::read_npy(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let d = t.dims4().unwrap();
    (t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), d)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(kind: Kind, input: &str, expected: &str, level: usize, tol: f32) {
    let (x, shape) = load(input);
    let (want, wshape) = load(expected);
    assert_eq!(shape, wshape);
    let got = perturb::apply(kind, level, &x, shape, 0).unwrap();
    let d = max_diff(&got, &want);
    eprintln!("{kind} level {level} on {input}: max |diff| {d:e}");
    assert!(
        d <= tol,
        "{kind} level {level} on {input}: max |diff| {d} > {tol}"
    );
}

#[test]
fn contrast_matches_torchvision() {
    for lv in 1..=4 {
        check(
            Kind::Contrast,
            "in32.npy",
            &format!("contrast_L{lv}.npy"),
            lv,
            1e-5,
        );
        check(
            Kind::Contrast,
            "gray32.npy",
            &format!("contrast_gray_L{lv}.npy"),
            lv,
            1e-5,
        );
    }
}

#[test]
fn saturation_matches_torchvision() {
    for lv in 1..=4 {
        check(
            Kind::Saturation,
            "in32.npy",
            &format!("saturation_L{lv}.npy"),
            lv,
            1e-5,
        );
    }
}

#[test]
fn hue_matches_torchvision() {
    for lv in 1..=4 {
        check(Kind::Hue, "in32.npy", &format!("hue_L{lv}.npy"), lv, 1e-4);
    }
}

#[test]
fn grey_images_keep_saturation_and_hue() {
    let (x, shape) = load("gray32.npy");
    for kind in [Kind::Saturation, Kind::Hue] {
        for lv in 1..=4 {
            assert_eq!(
                perturb::apply(kind, lv, &x, shape, 0).unwrap(),
                x,
                "{kind} {lv}"
            );
        }
    }
}

#[test]
fn brightness_adds_and_clamps() {
    let (x, shape) = load("in32.npy");
    for lv in 1..=4 {
        let v = (16 * lv) as f32 / 255.0;
        assert_eq!(Kind::Brightness.param(lv, 32), (16 * lv) as f64 / 255.0);
        let got = perturb::apply(Kind::Brightness, lv, &x, shape, 0).unwrap();
        for (g, &p) in got.iter().zip(&x) {
            assert_eq!(*g, (p + v).min(1.0));
        }
    }
}

#[test]
fn brightness_matches_numpy() {
    for lv in 1..=4 {
        check(
            Kind::Brightness,
            "in32.npy",
            &format!("brightness_L{lv}.npy"),
            lv,
            0.0,
        );
    }
}

#[test]
fn channel_shift_matches_torch_roll() {
    for tag in ["32", "33", "28x36"] {
        for lv in 1..=4 {
            check(
                Kind::ChannelShift,
                &format!("in{tag}.npy"),
                &format!("channel_shift_{tag}_L{lv}.npy"),
                lv,
                0.0,
            );
        }
    }
}

#[test]
fn rotate_matches_torchvision() {
    for tag in ["32", "33", "28x36"] {
        for lv in 1..=4 {
            check(
                Kind::Rotate,
                &format!("in{tag}.npy"),
                &format!("rotate_{tag}_L{lv}.npy"),
                lv,
                1e-5,
            );
        }
    }
}

#[test]
fn crop_resize_matches_torchvision() {
    for tag in ["32", "33", "28x36"] {
        for lv in 1..=4 {
            check(
                Kind::CropResize,
                &format!("in{tag}.npy"),
                &format!("crop_{tag}_L{lv}.npy"),
                lv,
                1e-5,
            );
        }
    }
}

#[test]
fn antialiased_downscale_matches_torchvision() {
    let (x32, s32) = load("in32.npy");
    let (x33, s33) = load("in33.npy");
    for (x, s, size, name) in [
        (&x32, s32, (20, 20), "resize_32_to_20.npy"),
        (&x32, s32, (13, 13), "resize_32_to_13.npy"),
        (&x33, s33, (24, 17), "resize_33_to_24x17.npy"),
    ] {
        let (want, _) = load(name);
        let got = perturb::resize_bilinear_aa(x, s, size).unwrap();
        let d = max_diff(&got, &want);
        assert!(d <= 1e-5, "{name}: max |diff| {d}");
    }
}

#[test]
fn level_zero_is_identity() {
    let (x, shape) = load("in33.npy");
    for kind in Kind::ALL {
        assert_eq!(perturb::apply(kind, 0, &x, shape, 7).unwrap(), x, "{kind}");
        let id = kind.param(0, 33);
        assert_eq!(
            perturb::apply_value(kind, id, &x, shape, 7).unwrap(),
            x,
            "{kind}"
        );
    }
}

#[test]
fn every_level_changes_the_image_and_keeps_range() {
    let (x, shape) = load("in32.npy");
    for kind in Kind::ALL {
        assert_eq!(kind.levels(), 4);
        for lv in 1..=kind.levels() {
            let y = perturb::apply(kind, lv, &x, shape, 3).unwrap();
            assert_eq!(y.len(), x.len());
            assert_ne!(y, x, "{kind} level {lv} is the identity");
            assert!(
                y.iter().all(|v| (0.0..=1.0).contains(v)),
                "{kind} level {lv} leaves [0,1]"
            );
        }
    }
}

fn sorted_pixels(im: &[f32], c: usize, hw: usize) -> Vec<Vec<u32>> {
    let mut px: Vec<Vec<u32>> = (0..hw)
        .map(|i| (0..c).map(|ch| im[ch * hw + i].to_bits()).collect())
        .collect();
    px.sort();
    px
}

#[test]
fn center_shuffle_permutes_pixels_of_the_centre() {
    for input in ["in32.npy", "in33.npy", "in28x36.npy"] {
        let (x, shape) = load(input);
        let (n, c, h, w) = shape;
        let side = h.min(w);
        for lv in 1..=4 {
            let y = perturb::apply(Kind::CenterShuffle, lv, &x, shape, 11).unwrap();
            let p = [0.25, 0.5, 0.75, 1.0][lv - 1];
            assert_eq!(Kind::CenterShuffle.param(lv, side), p);
            let m = (p.sqrt() * side as f64).round_ties_even() as usize;
            let top = (((h - m) as f64) / 2.0).round_ties_even() as usize;
            let left = (((w - m) as f64) / 2.0).round_ties_even() as usize;
            let inside =
                |yy: usize, xx: usize| yy >= top && yy < top + m && xx >= left && xx < left + m;
            let il = c * h * w;
            for i in 0..n {
                let (a, b) = (&x[i * il..(i + 1) * il], &y[i * il..(i + 1) * il]);
                // whole-pixel multiset preserved (colours stay together)
                assert_eq!(
                    sorted_pixels(a, c, h * w),
                    sorted_pixels(b, c, h * w),
                    "{input} level {lv}"
                );
                // pixels outside the square untouched; inside, many moved
                let mut moved = 0;
                for yy in 0..h {
                    for xx in 0..w {
                        for ch in 0..c {
                            let k = ch * h * w + yy * w + xx;
                            if !inside(yy, xx) {
                                assert_eq!(a[k], b[k]);
                            } else if a[k] != b[k] {
                                moved += 1;
                            }
                        }
                    }
                }
                assert!(
                    moved > m * m / 2,
                    "{input} level {lv}: only {moved} values moved"
                );
            }
        }
    }
}

#[test]
fn puzzle_permutes_blocks() {
    for input in ["in32.npy", "in33.npy", "in28x36.npy"] {
        let (x, shape) = load(input);
        let (n, c, h, w) = shape;
        for lv in 1..=4 {
            let k = lv + 1;
            assert_eq!(Kind::Puzzle.param(lv, h.min(w)), k as f64);
            assert_eq!(
                Kind::Puzzle.param_label(lv, h.min(w)),
                format!("puzzle {k}x{k}")
            );
            let y = perturb::apply(Kind::Puzzle, lv, &x, shape, 5).unwrap();
            let (bh, bw) = (h / k, w / k);
            let il = c * h * w;
            for i in 0..n {
                let (a, b) = (&x[i * il..(i + 1) * il], &y[i * il..(i + 1) * il]);
                assert_eq!(sorted_pixels(a, c, h * w), sorted_pixels(b, c, h * w));
                // remainder strips stay in place
                for ch in 0..c {
                    for yy in 0..h {
                        for xx in 0..w {
                            if yy >= k * bh || xx >= k * bw {
                                let q = ch * h * w + yy * w + xx;
                                assert_eq!(a[q], b[q]);
                            }
                        }
                    }
                }
                // every output block is some input block, and not all in place
                let block = |im: &[f32], by: usize, bx: usize| -> Vec<f32> {
                    let mut v = Vec::new();
                    for ch in 0..c {
                        for r in 0..bh {
                            let s = ch * h * w + (by * bh + r) * w + bx * bw;
                            v.extend_from_slice(&im[s..s + bw]);
                        }
                    }
                    v
                };
                let src: Vec<Vec<f32>> = (0..k * k).map(|t| block(a, t / k, t % k)).collect();
                let mut used = vec![false; k * k];
                let mut moved = 0;
                for t in 0..k * k {
                    let got = block(b, t / k, t % k);
                    let j = (0..k * k)
                        .find(|&j| !used[j] && src[j] == got)
                        .expect("output block is an input block");
                    used[j] = true;
                    if got != src[t] {
                        moved += 1;
                    }
                }
                assert!(moved >= 2, "{input} k={k}: permutation is the identity");
            }
        }
    }
}

#[test]
fn channel_shift_rolls_red_and_green() {
    for input in ["in32.npy", "in33.npy", "in28x36.npy"] {
        let (x, shape) = load(input);
        let (n, c, h, w) = shape;
        let side = h.min(w);
        for lv in 1..=4 {
            let nn = (side / [32, 16, 8, 4][lv - 1]).max(1);
            assert_eq!(Kind::ChannelShift.param(lv, side), nn as f64);
            let y = perturb::apply(Kind::ChannelShift, lv, &x, shape, 0).unwrap();
            let il = c * h * w;
            for i in 0..n {
                for (ch, s) in [(0, nn), (1, nn / 2), (2, 0)] {
                    for yy in 0..h {
                        for xx in 0..w {
                            let src =
                                ch * h * w + ((yy + h - s % h) % h) * w + (xx + w - s % w) % w;
                            assert_eq!(y[i * il + ch * h * w + yy * w + xx], x[i * il + src]);
                        }
                    }
                }
            }
        }
    }
    // side 32: N = 1, 2, 4, 8
    let ns: Vec<f64> = (1..=4).map(|l| Kind::ChannelShift.param(l, 32)).collect();
    assert_eq!(ns, vec![1.0, 2.0, 4.0, 8.0]);
    assert_eq!(Kind::ChannelShift.param(1, 16), 1.0);
}

#[test]
fn random_kinds_are_seeded() {
    let (x, shape) = load("in32.npy");
    for kind in [Kind::CenterShuffle, Kind::Puzzle, Kind::Noise] {
        for lv in 1..=4 {
            let a = perturb::apply(kind, lv, &x, shape, 42).unwrap();
            let b = perturb::apply(kind, lv, &x, shape, 42).unwrap();
            let c = perturb::apply(kind, lv, &x, shape, 43).unwrap();
            assert_eq!(a, b, "{kind} {lv} not deterministic");
            if !(kind == Kind::Puzzle && lv == 1) {
                assert_ne!(a, c, "{kind} {lv}: seeds 42 and 43 agree");
            }
        }
        // batching with apply_at gives the same images as one call
        let il = 3 * 32 * 32;
        let whole = perturb::apply(kind, 2, &x, shape, 9).unwrap();
        let first = perturb::apply_at(kind, 2, &x[..2 * il], (2, 3, 32, 32), 9, 0).unwrap();
        let second = perturb::apply_at(kind, 2, &x[2 * il..], (2, 3, 32, 32), 9, 2).unwrap();
        assert_eq!([first, second].concat(), whole, "{kind}");
    }
    // puzzle 2x2: over a few seeds the permutations differ
    let outs: Vec<Vec<f32>> = (0..6)
        .map(|s| perturb::apply(Kind::Puzzle, 1, &x, shape, s).unwrap())
        .collect();
    assert!(outs.iter().any(|o| o != &outs[0]));
}

#[test]
fn noise_is_clamped_and_has_the_right_scale() {
    let (n, c, h, w) = (2, 3, 64, 64);
    let x = vec![0.5f32; n * c * h * w];
    for lv in 1..=4 {
        let sigma = Kind::Noise.param(lv, h);
        let y = perturb::apply(Kind::Noise, lv, &x, (n, c, h, w), 1).unwrap();
        assert!(y.iter().all(|v| (0.0..=1.0).contains(v)));
        let d: Vec<f64> = y.iter().map(|&v| v as f64 - 0.5).collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let sd = (d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        assert!(mean.abs() < 0.05 * sigma + 1e-3, "level {lv}: mean {mean}");
        if sigma < 0.15 {
            assert!(
                (sd - sigma).abs() < 0.05 * sigma,
                "level {lv}: sd {sd} vs {sigma}"
            );
        }
    }
    // an image at the bounds stays in [0,1] and gets clamped values
    let x = vec![1.0f32; 3 * 8 * 8];
    let y = perturb::apply(Kind::Noise, 4, &x, (1, 3, 8, 8), 0).unwrap();
    assert!(y.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(y.iter().filter(|&&v| v == 1.0).count() > 50);
}

#[test]
fn levels_and_labels() {
    assert_eq!(Kind::Hue.param(2, 32), 0.2);
    assert_eq!(Kind::Hue.param_label(2, 32), "hue 0.2");
    assert_eq!(Kind::Brightness.param(2, 32), 32.0 / 255.0);
    assert_eq!(Kind::Brightness.param_label(2, 32), "brightness +32/255");
    assert_eq!(Kind::ChannelShift.param_label(3, 32), "shift 4px");
    assert_eq!(Kind::Contrast.param(4, 32), 2.0);
    let rot: Vec<f64> = (1..=4).map(|l| Kind::Rotate.param(l, 32)).collect();
    assert_eq!(rot, vec![30.0, 60.0, 90.0, 180.0]);
    let noise: Vec<f64> = (1..=4).map(|l| Kind::Noise.param(l, 32)).collect();
    assert_eq!(noise, vec![0.05, 0.1, 0.2, 0.4]);
    let crop: Vec<f64> = (1..=4).map(|l| Kind::CropResize.param(l, 32)).collect();
    assert_eq!(crop, vec![28.0, 24.0, 16.0, 8.0]);
    for k in Kind::ALL {
        assert_eq!(k.name().parse::<Kind>().unwrap(), k);
        assert!(!k.param_label(1, 32).is_empty());
    }
    assert_eq!(
        Kind::COLOUR,
        [
            Kind::Brightness,
            Kind::Contrast,
            Kind::Saturation,
            Kind::Hue
        ]
    );
    assert_eq!(
        Kind::PROBES,
        [Kind::ChannelShift, Kind::CenterShuffle, Kind::Puzzle]
    );
}

#[test]
fn errors_list_valid_values() {
    let e = "blur".parse::<Kind>().unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    let msg = e.to_string();
    assert!(
        msg.contains("blur") && msg.contains("hue") && msg.contains("crop-resize"),
        "{msg}"
    );
    let x = vec![0.5f32; 3 * 4 * 4];
    let e = perturb::apply(Kind::Hue, 5, &x, (1, 3, 4, 4), 0).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)));
    assert!(e.to_string().contains("0..4"), "{e}");
    let e = perturb::apply(Kind::Hue, 1, &x, (1, 3, 4, 5), 0).unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert!(perturb::apply_value(Kind::Hue, 0.7, &x, (1, 3, 4, 4), 0).is_err());
    assert!(perturb::apply_value(Kind::Contrast, -1.0, &x, (1, 3, 4, 4), 0).is_err());
    assert!(perturb::apply_value(Kind::CropResize, 9.0, &x, (1, 3, 4, 4), 0).is_err());
    assert!(perturb::apply(Kind::Saturation, 1, &[0.5; 2 * 16], (1, 2, 4, 4), 0).is_err());
}

#[test]
fn apply_value_interpolates_levels() {
    let (x, shape) = load("in32.npy");
    for kind in Kind::COLOUR {
        for lv in 1..=4 {
            let a = perturb::apply(kind, lv, &x, shape, 0).unwrap();
            let b = perturb::apply_value(kind, kind.param(lv, 32), &x, shape, 0).unwrap();
            assert_eq!(a, b);
        }
    }
    let h = perturb::apply_value(Kind::Hue, -0.25, &x, shape, 0).unwrap();
    assert!(h.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn selection_parser() {
    use perturb::parse_selection;
    assert_eq!(
        parse_selection("hue").unwrap(),
        (1..=4).map(|l| (Kind::Hue, l)).collect::<Vec<_>>()
    );
    assert_eq!(
        parse_selection("hue:1,2").unwrap(),
        vec![(Kind::Hue, 1), (Kind::Hue, 2)]
    );
    assert_eq!(
        parse_selection("puzzle:2-3").unwrap(),
        vec![(Kind::Puzzle, 2), (Kind::Puzzle, 3)]
    );
    let all = parse_selection("all").unwrap();
    assert_eq!(all.len(), 28);
    assert!(all.contains(&(Kind::ChannelShift, 4)) && !all.iter().any(|(k, _)| *k == Kind::Rotate));
    assert_eq!(
        parse_selection("hue:2+rotate:1").unwrap(),
        vec![(Kind::Hue, 2), (Kind::Rotate, 1)]
    );
    let e = parse_selection("hue:7").unwrap_err().to_string();
    assert!(e.contains("0..4"), "{e}");
    let e = parse_selection("blur").unwrap_err().to_string();
    assert!(
        e.contains("blur") && e.contains("channel-shift") && e.contains("all"),
        "{e}"
    );
    assert!(parse_selection("hue:x").is_err());
    assert!(parse_selection("").is_err());
}

// ---- CLI ----

fn tmp(name: &str) -> PathBuf {
    // Under cargo's test tmpdir (target/), not the system's: nothing left in /tmp.
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("semcon-perturb-test");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn semcon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_semcon"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_writes_npy() {
    let input = fixture_dir().join("in32.npy");
    let out = tmp("hue2.npy");
    let o = semcon(&[
        "perturb",
        "--input",
        input.to_str().unwrap(),
        "--perturb",
        "hue",
        "--level",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = candle_core::Tensor::read_npy(&out).unwrap();
    assert_eq!(t.dims(), &[4, 3, 32, 32]);
    let (want, _) = load("hue_L2.npy");
    let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(max_diff(&got, &want) <= 1e-4);
}

#[test]
fn cli_writes_png_grid() {
    let input = fixture_dir().join("in33.npy");
    let out = tmp("puzzle.png");
    let o = semcon(&[
        "perturb",
        "--input",
        input.to_str().unwrap(),
        "--perturb",
        "puzzle",
        "--level",
        "3",
        "--seed",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&out).unwrap();
    // 2 columns x 2 rows of upscaled 33x33 cells
    assert!(
        img.width() > 2 * 33 && img.height() > 2 * 33,
        "{}x{}",
        img.width(),
        img.height()
    );
    // top-left cell is the first original image (nearest-neighbour upscaled)
    let (x, _) = load("in33.npy");
    let px = img.to_rgb8().get_pixel(2, 2).0;
    let want: Vec<u8> = (0..3)
        .map(|ch| (x[ch * 33 * 33] * 255.0).round() as u8)
        .collect();
    assert_eq!(px.to_vec(), want);
}

#[test]
fn cli_unknown_perturbation_is_one_line_error() {
    let input = fixture_dir().join("in32.npy");
    let out = tmp("never.npy");
    let o = semcon(&[
        "perturb",
        "--input",
        input.to_str().unwrap(),
        "--perturb",
        "blur",
        "--level",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("blur") && err.contains("hue"), "{err}");
    assert!(!out.exists());
    // out-of-range level: one line too
    let o = semcon(&[
        "perturb",
        "--input",
        input.to_str().unwrap(),
        "--perturb",
        "hue",
        "--level",
        "9",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("0..4"), "{err}");
}
