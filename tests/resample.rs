//! PIL's resize and torchvision's Resize + CenterCrop, bit for bit, on real
//! photographs (tests/fixtures/make_resample.py), against Pillow 13 and
//! Pillow 11 (whose pass order differs).

mod common;

use candle_core::Tensor;
use semcon::data::npyz::Npz;
use semcon::data::{
    preprocess::Preprocess,
    resample::{self, Filter, Order, Window},
};

fn u8s(t: &Tensor) -> Vec<u8> {
    t.flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

fn check(file: &str) {
    let npz = Npz::open(&common::fixture("resample").join(file)).unwrap();
    let version = String::from_utf8(u8s(&npz.get("version").unwrap().unwrap())).unwrap();
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    let order = if major >= 13 {
        Order::Pillow13
    } else {
        Order::HorizontalFirst
    };
    let mut n = 0;
    let mut torchvision = 0;
    while let Some(case) = npz.get(&format!("case_{n}")).unwrap() {
        let c: Vec<i64> = case.to_vec1().unwrap();
        let src_t = npz.get(&format!("src_{}", c[0])).unwrap().unwrap();
        let (h, w, ch) = src_t.dims3().unwrap();
        let src = u8s(&src_t);
        let filter = [Filter::Nearest, Filter::Bilinear, Filter::Bicubic][c[1] as usize];
        let (a, b) = (c[2] as usize, c[3] as usize);
        let want_t = npz.get(&format!("out_{n}")).unwrap().unwrap();
        let got = if c[4] == 0 {
            resample::resize(&src, (w, h, ch), (a, b), filter, order)
        } else {
            torchvision += 1;
            let (rw, rh) = resample::shorter_side_size(w, h, a);
            let r = resample::resize(&src, (w, h, ch), (rw, rh), filter, order);
            let off = resample::center_crop_offsets(rw, rh, b, b);
            resample::crop(&r, (rw, rh, ch), off, (b, b))
        };
        let want = u8s(&want_t);
        assert_eq!(got.len(), want.len(), "{file} case {n} {c:?}: size");
        let diff = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        assert_eq!(
            diff, 0,
            "{file} case {n} {c:?} ({w}x{h}): {diff} values differ from PIL {version}"
        );
        n += 1;
    }
    assert!(n >= 120, "{file}: only {n} cases");
    if major >= 13 {
        assert!(torchvision >= 36, "{file}: torchvision cases missing");
    }
}

#[test]
fn resize_matches_pillow_13() {
    check("pil13.npz");
}

#[test]
fn resize_matches_pillow_11() {
    check("pil11.npz");
}

#[test]
fn torchvision_sizes_and_crop_offsets() {
    // Resize(256) of a 500x375 photo: the shorter side 256, int(256*500/375) = 341.
    assert_eq!(resample::shorter_side_size(500, 375, 256), (341, 256));
    assert_eq!(resample::shorter_side_size(375, 500, 256), (256, 341));
    assert_eq!(resample::shorter_side_size(333, 333, 224), (224, 224));
    // CenterCrop rounds (size - crop) / 2 half to even, as Python's round.
    assert_eq!(resample::center_crop_offsets(341, 256, 224, 224), (58, 16));
    assert_eq!(resample::center_crop_offsets(229, 227, 224, 224), (2, 2)); // 2.5 -> 2, 1.5 -> 2
    assert_eq!(resample::center_crop_offsets(231, 224, 224, 224), (4, 0)); // 3.5 -> 4
}

/// Computing only a window of the resize gives the window of the full
/// resize, value for value, in both pass orders and every filter.
#[test]
fn a_window_equals_the_window_of_the_whole() {
    let npz = Npz::open(&common::fixture("resample").join("pil13.npz")).unwrap();
    let src_t = npz.get("src_1").unwrap().unwrap();
    let (h, w, c) = src_t.dims3().unwrap();
    let src = u8s(&src_t);
    let mut seed = 7u64;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % m
    };
    for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic] {
        for order in [Order::Pillow13, Order::HorizontalFirst] {
            for (ow, oh) in [
                (w, 20),
                (20, h),
                (w + 9, h / 3),
                (w / 2, h - 5),
                (w, h + 4),
                (57, 29),
            ] {
                let full = resample::resize(&src, (w, h, c), (ow, oh), filter, order);
                for _ in 0..5 {
                    let (cw, ch) = (1 + next(ow), 1 + next(oh));
                    let (l, t) = (next(ow - cw + 1), next(oh - ch + 1));
                    let want = resample::crop(&full, (ow, oh, c), (l, t), (cw, ch));
                    let got = resample::resize_crop(
                        &src,
                        (w, h, c),
                        Window::whole(w, h),
                        (ow, oh),
                        filter,
                        order,
                        (l, t),
                        (cw, ch),
                    );
                    assert_eq!(
                        got, want,
                        "{filter:?} {order:?} {ow}x{oh} window {cw}x{ch} at ({l},{t})"
                    );
                    // Given only the source region it reads (as a decoder
                    // decoding part of a JPEG gives it), or a little more.
                    let need = resample::source_window((w, h), (ow, oh), filter, (l, t), (cw, ch));
                    assert!(need.w >= 1 && need.h >= 1 && Window::whole(w, h).contains(&need));
                    let (x0, y0) = (need.x - next(need.x + 1), need.y - next(need.y + 1));
                    let (x1, y1) = (
                        need.x + need.w + next(w - need.x - need.w + 1),
                        need.y + need.h + next(h - need.y - need.h + 1),
                    );
                    let (ww, wh) = (x1 - x0, y1 - y0);
                    let part = resample::crop(&src, (w, h, c), (x0, y0), (ww, wh));
                    let win = Window {
                        x: x0,
                        y: y0,
                        w: ww,
                        h: wh,
                    };
                    let got = resample::resize_crop(
                        &part,
                        (w, h, c),
                        win,
                        (ow, oh),
                        filter,
                        order,
                        (l, t),
                        (cw, ch),
                    );
                    assert_eq!(got, want, "{filter:?} {order:?} {ow}x{oh} from {win:?}");
                }
            }
        }
    }
}

/// torchvision's 256/224 preset on a 500x375 photo reads only the middle
/// of it: the columns and rows under the taps of the crop (what the JPEG
/// decoder is asked for), the values below computed by hand from PIL's
/// support (scale 375/256, support 1.46 source pixels either side).
#[test]
fn the_center_crop_reads_the_middle_of_the_image() {
    let p = Preprocess::new(256, 224, Filter::Bilinear).unwrap();
    // Resized to 341x256, the crop starts at (58, 16).
    let win = p.source_window(500, 375).unwrap();
    let scale = 375.0 / 256.0;
    let (first_x, end_x) = (58.5 * scale - scale, (58.0 + 224.0 - 0.5) * scale + scale);
    let (first_y, end_y) = (16.5 * scale - scale, (16.0 + 224.0 - 0.5) * scale + scale);
    assert_eq!(win.x, (first_x + 0.5) as usize, "{win:?}");
    assert_eq!(win.x + win.w, (end_x + 0.5) as usize, "{win:?}");
    assert_eq!(win.y, (first_y + 0.5) as usize, "{win:?}");
    assert_eq!(win.y + win.h, (end_y + 0.5) as usize, "{win:?}");
    assert!(win.w * win.h < 500 * 375 * 6 / 10, "{win:?}");
    // Bicubic reads two source pixels further each side; nearest everything.
    let b = Preprocess::new(256, 224, Filter::Bicubic)
        .unwrap()
        .source_window(500, 375)
        .unwrap();
    assert!(
        b.contains(&win) && b.w > win.w && b.h > win.h,
        "{b:?} {win:?}"
    );
    let n = Preprocess::new(256, 224, Filter::Nearest)
        .unwrap()
        .source_window(500, 375)
        .unwrap();
    assert_eq!(n, Window::whole(500, 375));
}

/// Empty images and strips whose resize would pass PIL's bomb limit are
/// errors (fuzzing found the first as a capacity-overflow panic).
#[test]
fn degenerate_images_are_errors_not_panics() {
    let p = Preprocess::new(256, 224, Filter::Bilinear).unwrap();
    assert!(p.apply(&[], 54, 0).unwrap_err().contains("54x0"));
    assert!(p.apply(&[], 0, 7).is_err());
    let strip = vec![7u8; 3 * 1_000_000];
    let e = p.apply(&strip, 1_000_000, 1).unwrap_err();
    assert!(e.contains("more than the 178956970 pixels"), "{e}");
    // A long but reasonable strip still works.
    let ok = vec![7u8; 3 * 2000 * 3];
    assert_eq!(p.apply(&ok, 2000, 3).unwrap().len(), 224 * 224 * 3);
}
