//! The input transformations of the k* paper: Gaussian noise, rotation
//! (torchvision `TF.rotate`, bilinear) and centre crop + antialiased bilinear
//! resize (torchvision `TF.resize(..., antialias=True)`), ported from
//! torchvision's tensor path and ATen's CPU kernels in float32.

use crate::error::Result;
use rand::Rng;
use rand_distr::StandardNormal;

/// `clamp(x + sigma * z, 0, 1)`, z ~ N(0, 1) drawn from `rng` per value.
pub(super) fn noise(im: &[f32], out: &mut [f32], sigma: f32, mut rng: impl Rng) {
    for (o, &v) in out.iter_mut().zip(im) {
        let z: f32 = rng.sample(StandardNormal);
        *o = (v + sigma * z).clamp(0.0, 1.0);
    }
}

/// The sampling positions of `TF.rotate(x, angle)` for an `h x w` image, in
/// input pixel coordinates (x, y) per output pixel, row-major.
///
/// torchvision: `matrix = _get_inverse_affine_matrix([0, 0], -angle, [0, 0],
/// 1.0, [0, 0])` = [cos r, sin r, 0, -sin r, cos r, 0] with r = -angle in
/// radians; `_gen_affine_grid` (base grid of pixel centres relative to the
/// image centre, times theta^T / [w/2, h/2]); then grid_sample's
/// unnormalisation for align_corners=False: `(g + 1) * size / 2 - 0.5`.
pub(super) fn rotate_theta(angle_deg: f64, w: usize, h: usize) -> Vec<[f32; 2]> {
    let rot = (-angle_deg) * (std::f64::consts::PI / 180.0);
    let (a, b, c, d) = (rot.cos(), -rot.sin(), rot.sin(), rot.cos());
    let theta = [d as f32, -b as f32, 0.0f32, -c as f32, a as f32, 0.0f32];
    let (hw, hh) = (0.5 * w as f32, 0.5 * h as f32);
    // rescaled_theta = theta^T / [w/2, h/2]  (3 x 2)
    let r = [
        [theta[0] / hw, theta[3] / hh],
        [theta[1] / hw, theta[4] / hh],
        [theta[2] / hw, theta[5] / hh],
    ];
    let (sw, sh) = (w as f32 / 2.0, h as f32 / 2.0);
    let mut grid = Vec::with_capacity(h * w);
    for y in 0..h {
        let by = linspace_at(h, y);
        for x in 0..w {
            let bx = linspace_at(w, x);
            let gx = bx * r[0][0] + by * r[1][0] + r[2][0];
            let gy = bx * r[0][1] + by * r[1][1] + r[2][1];
            grid.push([(gx + 1.0) * sw - 0.5, (gy + 1.0) * sh - 0.5]);
        }
    }
    grid
}

/// `torch.linspace(-n/2 + 0.5, n/2 - 0.5, n)[i]` (exact: step 1).
fn linspace_at(n: usize, i: usize) -> f32 {
    (-(n as f64) * 0.5 + 0.5 + i as f64) as f32
}

/// `grid_sample(x, grid, bilinear, padding_mode="zeros", align_corners=False)`
/// of one CHW image, `grid` in input pixel coordinates (see [`rotate_theta`]).
pub(super) fn grid_sample_bilinear(
    im: &[f32],
    out: &mut [f32],
    c: usize,
    h: usize,
    w: usize,
    grid: &[[f32; 2]],
) {
    let hw = h * w;
    let at = |ch: usize, y: i64, x: i64| -> f32 {
        if x >= 0 && (x as usize) < w && y >= 0 && (y as usize) < h {
            im[ch * hw + y as usize * w + x as usize]
        } else {
            0.0
        }
    };
    for (p, &[x, y]) in grid.iter().enumerate() {
        let (xw, yn) = (x.floor(), y.floor());
        let wd = x - xw;
        let e = 1.0 - wd;
        let n = y - yn;
        let s = 1.0 - n;
        let (nw, ne, sw, se) = (s * e, s * wd, n * e, n * wd);
        let (ix, iy) = (xw as i64, yn as i64);
        for ch in 0..c {
            out[ch * hw + p] = at(ch, iy, ix) * nw
                + at(ch, iy, ix + 1) * ne
                + at(ch, iy + 1, ix) * sw
                + at(ch, iy + 1, ix + 1) * se;
        }
    }
}

/// One axis of ATen's antialiased bilinear resampling
/// (`_compute_index_ranges_weights` / `_compute_indices_min_size_weights_aa`
/// for float, align_corners=False): per output index the first input index
/// and the normalised triangle-filter weights.
struct AaAxis {
    taps: Vec<(usize, Vec<f32>)>,
}

fn aa_axis(input: usize, output: usize) -> AaAxis {
    let scale = input as f32 / output as f32;
    let support: f32 = if scale >= 1.0 {
        (2.0 * 0.5 * scale as f64) as f32
    } else {
        1.0
    };
    let max_interp = (support.ceil() as i64) * 2 + 1;
    let invscale: f32 = if scale >= 1.0 {
        (1.0 / scale as f64) as f32
    } else {
        1.0
    };
    let taps = (0..output)
        .map(|i| {
            let center = (scale as f64 * (i as f64 + 0.5)) as f32;
            let xmin = (((center - support) as f64 + 0.5) as i64).max(0);
            let xmax = (((center + support) as f64 + 0.5) as i64).min(input as i64);
            let xsize = (xmax - xmin).clamp(0, max_interp);
            let mut wts: Vec<f32> = (0..xsize)
                .map(|j| {
                    let arg =
                        ((((j + xmin) as f32 - center) as f64 + 0.5) * invscale as f64) as f32;
                    let a = arg.abs();
                    if a < 1.0 {
                        1.0 - a
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f32 = wts.iter().fold(0.0f32, |acc, &v| acc + v);
            if total != 0.0 {
                wts.iter_mut().for_each(|v| *v /= total);
            }
            (xmin as usize, wts)
        })
        .collect();
    AaAxis { taps }
}

/// Antialiased bilinear resize of one CHW image from `(ih, iw)` to `(oh, ow)`:
/// width first, then height (ATen's separable order; an axis whose size does
/// not change is left alone).
pub(super) fn resize_one(
    im: &[f32],
    c: usize,
    (ih, iw): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let horizontal: Vec<f32> = if iw == ow {
        im.to_vec()
    } else {
        let ax = aa_axis(iw, ow);
        let mut t = vec![0f32; c * ih * ow];
        for row in 0..c * ih {
            let src = &im[row * iw..(row + 1) * iw];
            for (o, (xmin, wts)) in ax.taps.iter().enumerate() {
                t[row * ow + o] = dot(&src[*xmin..*xmin + wts.len()], wts);
            }
        }
        t
    };
    if ih == oh {
        return horizontal;
    }
    let ax = aa_axis(ih, oh);
    let mut out = vec![0f32; c * oh * ow];
    let mut col = vec![0f32; ih];
    for ch in 0..c {
        let plane = &horizontal[ch * ih * ow..(ch + 1) * ih * ow];
        for x in 0..ow {
            for (y, v) in col.iter_mut().enumerate() {
                *v = plane[y * ow + x];
            }
            for (o, (ymin, wts)) in ax.taps.iter().enumerate() {
                out[ch * oh * ow + o * ow + x] = dot(&col[*ymin..*ymin + wts.len()], wts);
            }
        }
    }
    out
}

/// `src[0]*w[0] + src[1]*w[1] + ...` accumulated left to right in f32.
#[inline]
fn dot(src: &[f32], w: &[f32]) -> f32 {
    src.iter().zip(w).fold(0.0f32, |t, (&s, &wt)| t + s * wt)
}

/// `TF.resize(x, [oh, ow], InterpolationMode.BILINEAR, antialias=True)` of a
/// float32 NCHW batch (torch's antialiased bilinear interpolation:
/// separable triangle filter whose support is scaled by the downscale
/// factor, PIL-style).
pub fn resize_bilinear_aa(
    x: &[f32],
    shape: (usize, usize, usize, usize),
    out_size: (usize, usize),
) -> Result<Vec<f32>> {
    super::common::check_shape(x, shape)?;
    let (n, c, h, w) = shape;
    let (oh, ow) = out_size;
    if oh == 0 || ow == 0 {
        return Err(crate::invalid!(
            "cannot resize to {oh}x{ow}: sizes must be at least 1"
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    use rayon::prelude::*;
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut(c * oh * ow)
        .zip(x.par_chunks(c * h * w))
        .for_each(|(o, im)| o.copy_from_slice(&resize_one(im, c, (h, w), (oh, ow))));
    Ok(out)
}
