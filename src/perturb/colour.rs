//! Colour perturbations: brightness (SPEC), and torchvision's
//! `adjust_contrast` / `adjust_saturation` / `adjust_hue` for float tensors,
//! ported op by op in float32 (torchvision/transforms/_functional_tensor.py).

/// `clamp(x + v, 0, 1)`.
pub(super) fn brightness(x: &[f32], v: f32) -> Vec<f32> {
    use rayon::prelude::*;
    x.par_iter().map(|&p| (p + v).clamp(0.0, 1.0)).collect()
}

/// `rgb_to_grayscale`: `0.2989 * r + 0.587 * g + 0.114 * b` in float32.
#[inline]
fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.2989f32 * r + 0.587f32 * g + 0.114f32 * b
}

/// `_blend(img1, img2, ratio)`: `(ratio * img1 + (1 - ratio) * img2).clamp(0, 1)`.
#[inline]
fn blend(a: f32, b: f32, ratio: f32, one_minus: f32) -> f32 {
    (ratio * a + one_minus * b).clamp(0.0, 1.0)
}

/// `adjust_contrast`: blends with the mean of the grey image (of the image
/// itself for one channel). `im`/`out` are one CHW image, `hw` = h * w.
pub(super) fn contrast(im: &[f32], out: &mut [f32], c: usize, hw: usize, factor: f64) {
    let sum: f64 = if c == 3 {
        (0..hw)
            .map(|i| grey(im[i], im[hw + i], im[2 * hw + i]) as f64)
            .sum()
    } else {
        im.iter().map(|&v| v as f64).sum()
    };
    let denom = if c == 3 { hw } else { im.len() };
    let mean = (sum / denom as f64) as f32;
    let (ratio, one_minus) = (factor as f32, (1.0 - factor) as f32);
    for (o, &v) in out.iter_mut().zip(im) {
        *o = blend(v, mean, ratio, one_minus);
    }
}

/// `adjust_saturation`: blends with the grey image; one channel: unchanged.
pub(super) fn saturation(im: &[f32], out: &mut [f32], c: usize, hw: usize, factor: f64) {
    if c != 3 {
        out.copy_from_slice(im);
        return;
    }
    let (ratio, one_minus) = (factor as f32, (1.0 - factor) as f32);
    for i in 0..hw {
        let g = grey(im[i], im[hw + i], im[2 * hw + i]);
        for ch in 0..3 {
            out[ch * hw + i] = blend(im[ch * hw + i], g, ratio, one_minus);
        }
    }
}

/// `adjust_hue`: RGB -> HSV, `h = (h + factor) % 1.0`, HSV -> RGB; one
/// channel: unchanged.
pub(super) fn hue(im: &[f32], out: &mut [f32], c: usize, hw: usize, factor: f64) {
    if c != 3 {
        out.copy_from_slice(im);
        return;
    }
    let f = factor as f32;
    for i in 0..hw {
        let (h, s, v) = rgb2hsv(im[i], im[hw + i], im[2 * hw + i]);
        let h = remainder1(h + f);
        let (r, g, b) = hsv2rgb(h, s, v);
        out[i] = r;
        out[hw + i] = g;
        out[2 * hw + i] = b;
    }
}

/// `torch.remainder(a, 1.0)`: fmod, moved into [0, 1) for negative results.
#[inline]
fn remainder1(a: f32) -> f32 {
    let m = a % 1.0;
    if m < 0.0 {
        m + 1.0
    } else {
        m
    }
}

/// torchvision `_rgb2hsv` for one pixel.
#[inline]
pub(super) fn rgb2hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let crd = if eqc { 1.0 } else { cr };
    let rc = (maxc - r) / crd;
    let gc = (maxc - g) / crd;
    let bc = (maxc - b) / crd;
    let hr = if maxc == r { bc - gc } else { 0.0 };
    let hg = if maxc == g && maxc != r {
        2.0 + rc - bc
    } else {
        0.0
    };
    let hb = if maxc != g && maxc != r {
        4.0 + gc - rc
    } else {
        0.0
    };
    let h = hr + hg + hb;
    let h = (h / 6.0 + 1.0) % 1.0;
    (h, s, maxc)
}

/// torchvision `_hsv2rgb` for one pixel.
#[inline]
pub(super) fn hsv2rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let i = (i as i32).rem_euclid(6);
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}
