//! Semantic-destroying probes (paper §4.3): RGB channel translation, centre
//! randomization, sliding puzzle. One CHW image at a time.

use rand::seq::SliceRandom;
use rand::Rng;

/// `torch.roll(x[ch], (s, s), dims=(H, W))` of one plane.
fn roll(src: &[f32], dst: &mut [f32], h: usize, w: usize, s: usize) {
    let (sy, sx) = (s % h, s % w);
    for y in 0..h {
        let yy = (y + h - sy) % h;
        let (drow, srow) = (&mut dst[y * w..(y + 1) * w], &src[yy * w..(yy + 1) * w]);
        // dst[x] = src[(x - sx) mod w]
        drow[sx..].copy_from_slice(&srow[..w - sx]);
        drow[..sx].copy_from_slice(&srow[w - sx..]);
    }
}

/// Channel 0 (R) rolled by (n, n), channel 1 (G) by (n/2, n/2), the rest unchanged.
pub(super) fn channel_shift(im: &[f32], out: &mut [f32], c: usize, h: usize, w: usize, n: usize) {
    let hw = h * w;
    for ch in 0..c {
        let s = match ch {
            0 => n,
            1 => n / 2,
            _ => 0,
        };
        roll(
            &im[ch * hw..(ch + 1) * hw],
            &mut out[ch * hw..(ch + 1) * hw],
            h,
            w,
            s,
        );
    }
}

/// The centred `m x m` square gets its own pixels in a random order (one
/// spatial permutation for all channels).
pub(super) fn center_shuffle(
    im: &[f32],
    out: &mut [f32],
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    mut rng: impl Rng,
) {
    out.copy_from_slice(im);
    if m < 2 {
        return;
    }
    let top = super::common::round_half_even((h - m) as f64 / 2.0) as usize;
    let left = super::common::round_half_even((w - m) as f64 / 2.0) as usize;
    let mut perm: Vec<usize> = (0..m * m).collect();
    perm.shuffle(&mut rng);
    let hw = h * w;
    for (dst, &src) in perm.iter().enumerate() {
        let (dy, dx) = (top + dst / m, left + dst % m);
        let (sy, sx) = (top + src / m, left + src % m);
        for ch in 0..c {
            out[ch * hw + dy * w + dx] = im[ch * hw + sy * w + sx];
        }
    }
}

/// A `k x k` grid of `h/k x w/k` blocks anchored top-left, permuted (never
/// the identity permutation); the remainder strips stay in place.
pub(super) fn puzzle(
    im: &[f32],
    out: &mut [f32],
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    mut rng: impl Rng,
) {
    out.copy_from_slice(im);
    let (bh, bw) = (h / k, w / k);
    if k < 2 || bh == 0 || bw == 0 {
        return;
    }
    let nb = k * k;
    let mut perm: Vec<usize> = (0..nb).collect();
    while perm.iter().enumerate().all(|(i, &p)| i == p) {
        perm.shuffle(&mut rng);
    }
    let hw = h * w;
    for (dst, &src) in perm.iter().enumerate() {
        let (dy, dx) = ((dst / k) * bh, (dst % k) * bw);
        let (sy, sx) = ((src / k) * bh, (src % k) * bw);
        for ch in 0..c {
            for r in 0..bh {
                let d = ch * hw + (dy + r) * w + dx;
                let s = ch * hw + (sy + r) * w + sx;
                out[d..d + bw].copy_from_slice(&im[s..s + bw]);
            }
        }
    }
}
