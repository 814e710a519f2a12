//! Perturbations (SPEC.md): pure functions image batch -> image batch.
//!
//! Every function takes a batch of float32 images in [0,1], layout NCHW, as a
//! flat slice plus its shape `(n, c, h, w)`, and returns a new vector of the
//! same shape. Random perturbations are seeded: image `i` of a call draws from
//! its own stream derived from `(seed, offset + i)` (`offset` is 0 for
//! [`apply`]/[`apply_value`]; [`apply_at`] sets it so that a dataset processed
//! in batches gets the same result as in one call). Level 0 is the identity
//! (an exact copy) for every kind.
//!
//! Kinds and levels (`side` = min(h, w)):
//!
//! | kind | value (units of [`Kind::param`]) | levels 1..4 |
//! |---|---|---|
//! | brightness | offset added to x (fraction of 1) | 16/255, 32/255, 48/255, 64/255 |
//! | contrast | factor | 1.25, 1.5, 1.75, 2.0 |
//! | saturation | factor | 1.25, 1.5, 1.75, 2.0 |
//! | hue | shift, fraction of the circle | 0.1, 0.2, 0.3, 0.4 |
//! | channel-shift | N pixels (R by N, G by N/2) | side/32, /16, /8, /4 (>= 1) |
//! | center-shuffle | area fraction p | 0.25, 0.5, 0.75, 1.0 |
//! | puzzle | k (k x k blocks) | 2, 3, 4, 5 |
//! | noise | sigma | 0.05, 0.1, 0.2, 0.4 |
//! | rotate | degrees, counter-clockwise | 30, 60, 90, 180 |
//! | crop-resize | crop side s in pixels | round(side * 7/8, 3/4, 1/2, 1/4) (>= 1) |
//!
//! Semantics:
//! - brightness: `clamp(x + v, 0, 1)` (SPEC: x + k/255 on the 0..255 scale).
//! - contrast, saturation, hue: torchvision's `adjust_contrast`,
//!   `adjust_saturation`, `adjust_hue` on float tensors, ported op by op in
//!   float32 (`_blend` with clamping, grey = 0.2989 R + 0.587 G + 0.114 B,
//!   `_rgb2hsv` / `_hsv2rgb`). One-channel images: contrast blends with the
//!   image mean, saturation and hue return the image unchanged (torchvision).
//!   These need 1 or 3 channels.
//! - channel-shift: `torch.roll` of channel 0 (R) by (N, N) and channel 1 (G)
//!   by (N/2, N/2) on (H, W): down-right with wrap-around; other channels
//!   unchanged (a one-channel image is simply rolled by N).
//! - center-shuffle: the centred square of side `m = round(sqrt(p) * side)`
//!   (Python rounding, half to even; top/left offset `round((h - m) / 2)` like
//!   torchvision's `center_crop`) gets its own pixels back in a seeded random
//!   order; one spatial permutation for all channels, so every pixel keeps its
//!   colour.
//! - puzzle: a k x k grid of blocks of `h / k` by `w / k` pixels (integer
//!   division) anchored at the top-left corner; the blocks are permuted with a
//!   seeded permutation that is never the identity (k is capped at min(h, w)).
//!   **Non-divisible sides**:
//!   the grid covers the largest multiple of k (the image is cropped to a
//!   multiple for the puzzle) and the remainder strips, the last `h % k` rows
//!   and the last `w % k` columns, stay in place unchanged.
//! - noise: `clamp(x + sigma * z, 0, 1)`, z ~ N(0, 1) seeded, per value.
//! - rotate: `TF.rotate(x, angle, InterpolationMode.BILINEAR)` on a tensor:
//!   inverse affine matrix, `_gen_affine_grid`, `grid_sample` (bilinear,
//!   zeros padding, align_corners=False), no fill mask (default fill): pixels
//!   that map outside the image are 0 and the border is interpolated with 0.
//! - crop-resize: `TF.resize(TF.center_crop(x, s), side, BILINEAR,
//!   antialias=True)`: a centred s x s crop resized back with torch's
//!   antialiased bilinear interpolation (separable triangle filter, support
//!   scaled by the downscale factor). Non-square images: the crop keeps the
//!   aspect ratio (s on the short side, `round(s * long / side)` on the long
//!   one) and is resized back to (h, w).

mod colour;
mod common;
mod geometric;
mod kind;
mod probes;

use common::{check_shape, round_half_even};
pub use kind::{parse_selection, Kind};

pub use geometric::resize_bilinear_aa;

use crate::error::Result;
use rayon::prelude::*;

/// Applies `kind` at `level` (0 = identity, 1..=`kind.levels()`).
pub fn apply(
    kind: Kind,
    level: usize,
    x: &[f32],
    shape: (usize, usize, usize, usize),
    seed: u64,
) -> Result<Vec<f32>> {
    apply_at(kind, level, x, shape, seed, 0)
}

/// [`apply`] for a batch that starts at image `offset` of a larger set: image
/// `i` uses the random stream of image `offset + i`, so batching does not
/// change the result.
pub fn apply_at(
    kind: Kind,
    level: usize,
    x: &[f32],
    shape: (usize, usize, usize, usize),
    seed: u64,
    offset: usize,
) -> Result<Vec<f32>> {
    if level > kind.levels() {
        return Err(crate::invalid!(
            "level {level} is out of range for {} (valid levels: 0..{})",
            kind.name(),
            kind.levels()
        ));
    }
    check_shape(x, shape)?;
    if level == 0 {
        return Ok(x.to_vec());
    }
    let side = shape.2.min(shape.3);
    apply_value_at(kind, kind.param(level, side), x, shape, seed, offset)
}

/// Applies `kind` with a continuous strength `value` in the units of
/// [`Kind::param`] (e.g. a random colour perturbation up to level 4 for
/// continuity training: `apply_value(Kind::Hue, 0.27, ..)`). Values that are
/// integral by nature (pixels, k) are rounded.
pub fn apply_value(
    kind: Kind,
    value: f64,
    x: &[f32],
    shape: (usize, usize, usize, usize),
    seed: u64,
) -> Result<Vec<f32>> {
    apply_value_at(kind, value, x, shape, seed, 0)
}

/// [`apply_value`] with the random streams of images `offset..` (see [`apply_at`]).
pub fn apply_value_at(
    kind: Kind,
    value: f64,
    x: &[f32],
    shape: (usize, usize, usize, usize),
    seed: u64,
    offset: usize,
) -> Result<Vec<f32>> {
    check_shape(x, shape)?;
    let (_, c, h, w) = shape;
    let side = h.min(w);
    if !value.is_finite() {
        return Err(crate::invalid!(
            "{}: value {value} is not a finite number",
            kind.name()
        ));
    }
    let range_err = |range: &str| {
        crate::invalid!(
            "{}: value {value} is out of range (valid: {range})",
            kind.name()
        )
    };
    if matches!(
        kind,
        Kind::Brightness | Kind::Contrast | Kind::Saturation | Kind::Hue
    ) && c != 1
        && c != 3
    {
        return Err(crate::invalid!(
            "{} needs images with 1 or 3 channels, got {c}",
            kind.name()
        ));
    }
    if value == kind.identity_value(side) {
        return Ok(x.to_vec());
    }
    let img_len = c * h * w;
    let out = match kind {
        Kind::Brightness => colour::brightness(x, value as f32),
        Kind::Contrast => {
            if value < 0.0 {
                return Err(range_err(">= 0"));
            }
            per_image(x, img_len, |_, im, o| {
                colour::contrast(im, o, c, h * w, value)
            })
        }
        Kind::Saturation => {
            if value < 0.0 {
                return Err(range_err(">= 0"));
            }
            per_image(x, img_len, |_, im, o| {
                colour::saturation(im, o, c, h * w, value)
            })
        }
        Kind::Hue => {
            if !(-0.5..=0.5).contains(&value) {
                return Err(range_err("-0.5..0.5"));
            }
            per_image(x, img_len, |_, im, o| colour::hue(im, o, c, h * w, value))
        }
        Kind::ChannelShift => {
            if value < 0.0 {
                return Err(range_err(">= 0 pixels"));
            }
            let n = value.round() as usize;
            per_image(x, img_len, |_, im, o| {
                probes::channel_shift(im, o, c, h, w, n)
            })
        }
        Kind::CenterShuffle => {
            if !(0.0..=1.0).contains(&value) {
                return Err(range_err("0..1, a fraction of the area"));
            }
            let m = (round_half_even(value.sqrt() * side as f64) as usize).min(side);
            per_image(x, img_len, |i, im, o| {
                probes::center_shuffle(im, o, c, h, w, m, stream(seed, kind, offset + i))
            })
        }
        Kind::Puzzle => {
            let k = value.round();
            if k < 1.0 {
                return Err(range_err(">= 1 blocks per side"));
            }
            // Images smaller than k pixels get one-pixel blocks.
            let k = (k as usize).min(side);
            per_image(x, img_len, |i, im, o| {
                probes::puzzle(im, o, c, h, w, k, stream(seed, kind, offset + i))
            })
        }
        Kind::Noise => {
            if value < 0.0 {
                return Err(range_err(">= 0"));
            }
            per_image(x, img_len, |i, im, o| {
                geometric::noise(im, o, value as f32, stream(seed, kind, offset + i))
            })
        }
        Kind::Rotate => {
            let grid = geometric::rotate_theta(value, w, h);
            per_image(x, img_len, |_, im, o| {
                geometric::grid_sample_bilinear(im, o, c, h, w, &grid)
            })
        }
        Kind::CropResize => {
            let s = value.round();
            if s < 1.0 || s > side as f64 {
                return Err(range_err(&format!("1..{side} pixels")));
            }
            let s = s as usize;
            if s == side {
                return Ok(x.to_vec());
            }
            let ch = if h == side {
                s
            } else {
                (round_half_even(s as f64 * h as f64 / side as f64) as usize).max(1)
            };
            let cw = if w == side {
                s
            } else {
                (round_half_even(s as f64 * w as f64 / side as f64) as usize).max(1)
            };
            let top = round_half_even((h - ch) as f64 / 2.0) as usize;
            let left = round_half_even((w - cw) as f64 / 2.0) as usize;
            per_image(x, img_len, |_, im, o| {
                let mut crop = Vec::with_capacity(c * ch * cw);
                for ci in 0..c {
                    for y in top..top + ch {
                        let row = ci * h * w + y * w;
                        crop.extend_from_slice(&im[row + left..row + left + cw]);
                    }
                }
                o.copy_from_slice(&geometric::resize_one(&crop, c, (ch, cw), (h, w)));
            })
        }
    };
    Ok(out)
}

/// Runs `f(index, image, out_image)` over the images in parallel.
fn per_image(x: &[f32], img_len: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if img_len == 0 {
        return out;
    }
    out.par_chunks_mut(img_len)
        .zip(x.par_chunks(img_len))
        .enumerate()
        .for_each(|(i, (o, im))| f(i, im, o));
    out
}

/// The seeded random stream of one image (SplitMix64 mixing of seed, kind,
/// image index into a `StdRng` seed).
fn stream(seed: u64, kind: Kind, index: usize) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let mut z = seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(kind as u64 + 1);
    let mut next = || {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut v = z;
        v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        v ^ (v >> 31)
    };
    let a = next();
    let b = next() ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..16].copy_from_slice(&b.to_le_bytes());
    bytes[16..24].copy_from_slice(&(index as u64).to_le_bytes());
    bytes[24..].copy_from_slice(&seed.to_le_bytes());
    rand::rngs::StdRng::from_seed(bytes)
}
