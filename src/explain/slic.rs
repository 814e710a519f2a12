//! SLIC superpixels as scikit-image 0.26's `skimage.segmentation.slic`
//! computes them with its defaults (no smoothing, Lab colour for RGB, a
//! regular grid of seeds, ten k-means iterations, then
//! `_enforce_label_connectivity_cython`), for LIME on large images: the
//! same labels as skimage's float64 path, step for step (tests/slic.rs).
//!
//! The order of operations mirrors `slic_superpixels.py` and `_slic.pyx`:
//! min-max rescaling of the whole image to [0, 1]; `rgb2lab` (sRGB gamma,
//! D65 / 2° white, `7.787 t + 16/116` below 0.008856); `regular_grid` for
//! the seeds (their colour starts at zero) and again, over the number of
//! seeds, for the search windows; the colour scaled by `1 / compactness`
//! and the spatial distance by `1 / step²` with `step` rounded to float32
//! as the Cython signature does; segments visited in seed order, pixels in
//! raster order, a pixel taken on a strictly smaller distance; means
//! recomputed in raster order (an empty segment's mean is 0/0 = NaN and it
//! never claims a pixel again, as the Cython's NaN window bounds make it);
//! connected components by the Cython's truncated breadth-first search,
//! those under half a segment's size given to the last different
//! neighbour met.

/// SLIC's settings (skimage's defaults).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SlicConfig {
    /// The approximate number of segments (`n_segments`, 100); 0 counts as 1.
    pub n_segments: usize,
    /// Colour against space (`compactness`, 10): higher gives squarer
    /// segments. Must be positive and finite (skimage raises otherwise);
    /// other values still give a valid labelling, not a meaningful one.
    pub compactness: f64,
    /// k-means iterations (`max_num_iter`, 10); 0 gives one segment.
    pub max_num_iter: usize,
}

impl Default for SlicConfig {
    fn default() -> Self {
        SlicConfig {
            n_segments: 100,
            compactness: 10.0,
            max_num_iter: 10,
        }
    }
}

/// SLIC superpixels of a CHW image (`pixels`, `channels` x `h` x `w`,
/// values in [0, 1]): each pixel's segment, row by row, 0-based and
/// consecutive (skimage's labels minus one), and the number of segments.
/// Three channels are RGB and go through Lab; any other count is used as
/// it is (one channel is skimage's 2-D image with `channel_axis=None`).
/// Every pixel gets a segment below the count, whatever the image size or
/// `n_segments`; an empty image gives no segments.
///
/// # Panics
/// If `channels` is 0 or `pixels.len() != channels * h * w`.
pub fn slic(
    pixels: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    cfg: &SlicConfig,
) -> (Vec<u32>, usize) {
    assert!(channels > 0, "slic: an image needs at least one channel");
    assert_eq!(
        pixels.len(),
        channels * h * w,
        "slic: {} values for a {channels} x {h} x {w} image",
        pixels.len()
    );
    let n = h * w;
    if n == 0 {
        return (Vec::new(), 0);
    }
    let image = features(pixels, channels, n, cfg.compactness);
    let (centroids, step) = grid_centroids(h, w, cfg.n_segments.max(1));
    if centroids.is_empty() {
        return (vec![0; n], 1);
    }
    let nc = centroids.len();
    let seg = kmeans(&image, channels, h, w, &centroids, step, cfg.max_num_iter);
    // skimage: segment_size = prod(shape) / n_centroids; int(factor * size).
    let segment_size = n as f64 / nc as f64;
    let min_size = (0.5 * segment_size) as usize;
    let max_size = (3.0 * segment_size) as usize;
    let conn = enforce_connectivity(&seg, h, w, min_size, max_size);
    finish(&conn)
}

/// The image skimage's k-means sees, HWC in float64: the input rescaled to
/// [0, 1] over all its values, converted to Lab when it has three
/// channels, times `1 / compactness`.
fn features(pixels: &[f32], channels: usize, n: usize, compactness: f64) -> Vec<f64> {
    let mut img = vec![0f64; n * channels];
    for c in 0..channels {
        for p in 0..n {
            img[p * channels + c] = pixels[c * n + p] as f64;
        }
    }
    let (lo, hi) = img
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    for v in &mut img {
        *v -= lo;
    }
    if hi != lo {
        let range = hi - lo;
        for v in &mut img {
            *v /= range;
        }
    }
    if channels == 3 {
        for px in img.chunks_exact_mut(3) {
            let lab = rgb2lab([px[0], px[1], px[2]]);
            px.copy_from_slice(&lab);
        }
    }
    let ratio = 1.0 / compactness;
    for v in &mut img {
        *v *= ratio;
    }
    img
}

/// skimage's `xyz_from_rgb` (sRGB, D65).
const XYZ_FROM_RGB: [[f64; 3]; 3] = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
];

/// skimage's D65 / 2° reference white.
const WHITE_D65: [f64; 3] = [0.95047, 1.0, 1.08883];

/// `skimage.color.rgb2lab` of one pixel in float64 (`xyz2lab(rgb2xyz(rgb))`).
/// The matrix product is the fused multiply-add chain OpenBLAS's AVX-512
/// kernel computes for `arr @ xyz_from_rgb.T`; numpy's power and cbrt may
/// differ from these in the last bit (SVML), which the labels do not feel.
fn rgb2lab(rgb: [f64; 3]) -> [f64; 3] {
    let lin = rgb.map(|v| {
        if v > 0.04045 {
            ((v + 0.055) / 1.055).powf(2.4)
        } else {
            v / 12.92
        }
    });
    let mut f = [0f64; 3];
    for (j, m) in XYZ_FROM_RGB.iter().enumerate() {
        let xyz = lin[2].mul_add(m[2], lin[1].mul_add(m[1], lin[0] * m[0]));
        let t = xyz / WHITE_D65[j];
        f[j] = if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        };
    }
    [
        116.0 * f[1] - 16.0,
        500.0 * (f[0] - f[1]),
        200.0 * (f[1] - f[2]),
    ]
}

/// `skimage.util.regular_grid(shape, n_points)`: per dimension the first
/// index and the step of about `n_points` regularly spaced points (a
/// dimension too small for the step is taken whole and the step computed
/// over the others).
fn regular_grid(shape: [usize; 3], n_points: usize) -> [(usize, usize); 3] {
    let space = shape.iter().product::<usize>() as f64;
    let n = n_points as f64;
    if space <= n {
        return [(0, 1); 3];
    }
    // np.argsort of three values sorts them stably.
    let mut order = [0usize, 1, 2];
    order.sort_by_key(|&d| shape[d]);
    let sorted = order.map(|d| shape[d] as f64);
    let mut steps = [(space / n).powf(1.0 / 3.0); 3];
    if sorted.iter().zip(&steps).any(|(d, s)| d < s) {
        for dim in 0..3 {
            steps[dim] = sorted[dim];
            if dim + 1 < 3 {
                let rest: f64 = sorted[dim + 1..].iter().product();
                let s = (rest / n).powf(1.0 / (3 - dim - 1) as f64);
                for v in &mut steps[dim + 1..] {
                    *v = s;
                }
            }
            if sorted.iter().zip(&steps).all(|(d, s)| d >= s) {
                break;
            }
        }
    }
    let mut out = [(0, 1); 3];
    for (k, &d) in order.iter().enumerate() {
        // starts = (steps // 2).astype(int); steps = np.round(steps).
        out[d] = (
            (steps[k] / 2.0).floor() as usize,
            steps[k].round_ties_even() as usize,
        );
    }
    out
}

/// `_get_grid_centroids` of a depth-1 image: the seeds' (y, x) in raster
/// order and `max(steps)` as the float32 the Cython receives.
fn grid_centroids(h: usize, w: usize, n_segments: usize) -> (Vec<(f64, f64)>, f32) {
    let [(z0, sz), (y0, sy), (x0, sx)] = regular_grid([1, h, w], n_segments);
    let mut c = Vec::new();
    if z0 < 1 {
        for y in (y0..h).step_by(sy) {
            for x in (x0..w).step_by(sx) {
                c.push((y as f64, x as f64));
            }
        }
    }
    let step = sz.max(sy).max(sx) as f32;
    (c, step)
}

/// `_slic_cython` (no mask, not SLIC-zero, spacing 1) on a depth-1 image:
/// each pixel's segment, 1-based, 0 where none reached it.
fn kmeans(
    image: &[f64],
    channels: usize,
    h: usize,
    w: usize,
    centroids: &[(f64, f64)],
    step: f32,
    max_num_iter: usize,
) -> Vec<usize> {
    let nf = 3 + channels;
    let nseg = centroids.len();
    // [z, y, x, colour...] per segment; the colour starts at zero.
    let mut segments = vec![0f64; nseg * nf];
    for (k, &(y, x)) in centroids.iter().enumerate() {
        segments[k * nf + 1] = y;
        segments[k * nf + 2] = x;
    }
    // The search windows' steps come from the grid for the seeds' count.
    let [(_, step_z), (_, step_y), (_, step_x)] = regular_grid([1, h, w], nseg);
    let (two_step_z, two_step_y, two_step_x) = (
        (2 * step_z) as f64,
        (2 * step_y) as f64,
        (2 * step_x) as f64,
    );
    let spatial_weight = 1.0 / (step * step) as f64;
    let mut nearest = vec![0usize; h * w];
    let mut distance = vec![f64::MAX; h * w];
    let mut counts = vec![0usize; nseg];
    for it in 0..max_num_iter {
        distance.fill(f64::MAX);
        let mut change = false;
        for k in 0..nseg {
            let seg = &segments[k * nf..(k + 1) * nf];
            let (cz, cy, cx) = (seg[0], seg[1], seg[2]);
            // An empty segment's centre is NaN: the Cython's window bounds
            // become INT_MIN and it visits nothing.
            if cz.is_nan() || cy.is_nan() || cx.is_nan() {
                continue;
            }
            let Some((z_min, z_max)) = window(cz, two_step_z, 1) else {
                continue;
            };
            if z_min >= z_max {
                continue;
            }
            let Some((y_min, y_max)) = window(cy, two_step_y, h) else {
                continue;
            };
            let Some((x_min, x_max)) = window(cx, two_step_x, w) else {
                continue;
            };
            let win = Window {
                centre: (cz, cy, cx),
                colour: &seg[3..],
                ys: y_min..y_max,
                xs: x_min..x_max,
                spatial_weight,
                label: k + 1,
            };
            // Constant channel counts let the compiler unroll the colour.
            change |= match channels {
                1 => scan(&win, image, 1, w, &mut nearest, &mut distance),
                3 => scan(&win, image, 3, w, &mut nearest, &mut distance),
                c => scan(&win, image, c, w, &mut nearest, &mut distance),
            };
        }
        // The Cython recomputes the means after the last assignment too;
        // they are not returned, so that pass is skipped.
        if !change || it + 1 == max_num_iter {
            break;
        }
        counts.fill(0);
        segments.fill(0.0);
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                if nearest[p] == 0 {
                    continue;
                }
                let k = nearest[p] - 1;
                counts[k] += 1;
                let seg = &mut segments[k * nf..(k + 1) * nf];
                // seg[0] += z, with z = 0.
                seg[1] += y as f64;
                seg[2] += x as f64;
                for (s, v) in seg[3..]
                    .iter_mut()
                    .zip(&image[p * channels..(p + 1) * channels])
                {
                    *s += v;
                }
            }
        }
        for (seg, &c) in segments.chunks_exact_mut(nf).zip(&counts) {
            for s in seg {
                *s /= c as f64;
            }
        }
    }
    nearest
}

/// One segment's search window.
struct Window<'a> {
    /// (z, y, x) of the centre.
    centre: (f64, f64, f64),
    /// The centre's colour.
    colour: &'a [f64],
    ys: std::ops::Range<usize>,
    xs: std::ops::Range<usize>,
    spatial_weight: f64,
    /// The segment's label (1-based).
    label: usize,
}

/// The Cython's inner loops for one segment: each pixel of the window
/// whose distance, `(dz² + dy² + dx²) / step² + sum (colour difference)²`
/// in that order, is strictly below its best so far takes the segment.
/// Returns whether any pixel did.
#[inline(always)]
fn scan(
    win: &Window,
    image: &[f64],
    channels: usize,
    w: usize,
    nearest: &mut [usize],
    distance: &mut [f64],
) -> bool {
    let (cz, cy, cx) = win.centre;
    let colour = &win.colour[..channels];
    let mut change = false;
    // z = 0 on a depth-1 image.
    let dz = cz * cz;
    for y in win.ys.clone() {
        let dy = cy - y as f64;
        let dzy = dz + dy * dy;
        let (a, b) = (y * w + win.xs.start, y * w + win.xs.end);
        let pixels = image[a * channels..b * channels].chunks_exact(channels);
        let rows = distance[a..b].iter_mut().zip(&mut nearest[a..b]);
        for ((x, px), (d, near)) in win.xs.clone().zip(pixels).zip(rows) {
            let dx = cx - x as f64;
            let mut dist = (dzy + dx * dx) * win.spatial_weight;
            let mut dist_color = 0.0;
            for (a, b) in px.iter().zip(colour) {
                let t = a - b;
                dist_color += t * t;
            }
            dist += dist_color;
            // Branch-free: the updates are too irregular to predict.
            let better = *d > dist;
            *near = if better { win.label } else { *near };
            *d = if better { dist } else { *d };
            change |= better;
        }
    }
    change
}

/// The Cython's window `[max(c - 2 step, 0), min(c + 2 step + 1, size))`,
/// each bound truncated to an integer (`two_step` is 2 step).
fn window(c: f64, two_step: f64, size: usize) -> Option<(usize, usize)> {
    let lo = if 0.0 > c - two_step {
        0.0
    } else {
        c - two_step
    };
    let hi_raw = c + two_step + 1.0;
    let hi = if (size as f64) < hi_raw {
        size as f64
    } else {
        hi_raw
    };
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    Some((lo as usize, hi as usize))
}

/// `_enforce_label_connectivity_cython` on a depth-1 image (labels from 1,
/// 0 for none): components found in raster order by a breadth-first search
/// over the neighbours x+1, x-1, y+1, y-1 that stops at `max_size` pixels
/// (the rest start components of their own later); a component under
/// `min_size` takes the label of the last differently labelled neighbour it
/// met (its own new label when none, which the next component then reuses).
fn enforce_connectivity(
    seg: &[usize],
    h: usize,
    w: usize,
    min_size: usize,
    max_size: usize,
) -> Vec<usize> {
    let n = h * w;
    let mut conn = vec![0usize; n];
    let mut coords = vec![0usize; max_size.max(1)];
    let mut current = 1usize;
    for p in 0..n {
        if seg[p] == 0 || conn[p] > 0 {
            continue;
        }
        let mut adjacent = current;
        let label = seg[p];
        conn[p] = current;
        let mut size = 1usize;
        let mut visited = 0usize;
        coords[0] = p;
        while visited < size && size < max_size {
            let q = coords[visited];
            let (y, x) = (q / w, q % w);
            let neighbours = [
                (x + 1 < w).then(|| q + 1),
                (x > 0).then(|| q - 1),
                (y + 1 < h).then(|| q + w),
                (y > 0).then(|| q - w),
            ];
            for r in neighbours.into_iter().flatten() {
                if seg[r] == label && conn[r] == 0 {
                    conn[r] = current;
                    coords[size] = r;
                    size += 1;
                    if size >= max_size {
                        break;
                    }
                } else if conn[r] > 0 && conn[r] != current {
                    adjacent = conn[r];
                }
            }
            visited += 1;
        }
        if size < min_size {
            for &q in &coords[..size] {
                conn[q] = adjacent;
            }
        } else {
            current += 1;
        }
    }
    conn
}

/// Labels from 1 (0 for a pixel no segment reached, which skimage leaves
/// unlabelled) to 0-based consecutive segments and their count: skimage's
/// numbering minus one where it is consecutive (it always is), unreached
/// pixels in a segment of their own.
fn finish(conn: &[usize]) -> (Vec<u32>, usize) {
    let max = conn.iter().copied().max().unwrap_or(0);
    let mut used = vec![false; max + 1];
    for &l in conn {
        used[l] = true;
    }
    let mut map = vec![0u32; max + 1];
    let mut count = 0usize;
    for l in 1..=max {
        if used[l] {
            map[l] = count as u32;
            count += 1;
        }
    }
    if used[0] {
        map[0] = count as u32;
        count += 1;
    }
    (conn.iter().map(|&l| map[l]).collect(), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid labelling: one label per pixel, all below the count, every
    /// label used.
    fn check(pixels: &[f32], c: usize, h: usize, w: usize, cfg: &SlicConfig) -> usize {
        let (labels, count) = slic(pixels, c, h, w, cfg);
        assert_eq!(labels.len(), h * w, "{c}x{h}x{w} {cfg:?}");
        let mut used = vec![false; count];
        for &l in &labels {
            assert!(
                (l as usize) < count,
                "{c}x{h}x{w} {cfg:?}: label {l} of {count}"
            );
            used[l as usize] = true;
        }
        assert!(used.iter().all(|&u| u), "{c}x{h}x{w} {cfg:?}: unused label");
        count
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 1000) as f32 / 999.0
            })
            .collect()
    }

    #[test]
    fn tiny_and_degenerate_images_get_valid_labels() {
        let sizes = [
            (1, 1),
            (1, 2),
            (2, 1),
            (3, 3),
            (1, 17),
            (17, 1),
            (2, 50),
            (5, 7),
        ];
        let settings = [
            (1, 10.0, 10),
            (4, 10.0, 10),
            (100, 10.0, 10),
            (10_000, 10.0, 10),
            (0, 10.0, 10),
            (9, 0.01, 10),
            (9, 1e6, 1),
            (9, 10.0, 0),
        ];
        for (h, w) in sizes {
            for c in [1, 3] {
                for img in [
                    vec![0.0; c * h * w],
                    vec![0.7; c * h * w],
                    noise(c * h * w, 7),
                ] {
                    for (n_segments, compactness, max_num_iter) in settings {
                        let cfg = SlicConfig {
                            n_segments,
                            compactness,
                            max_num_iter,
                        };
                        check(&img, c, h, w, &cfg);
                    }
                }
            }
        }
    }

    #[test]
    fn more_segments_than_pixels_gives_one_per_pixel_before_merging() {
        // skimage: a seed on every pixel; min_size is 0, so every pixel of
        // a noise image stays a segment of its own unless a neighbour has
        // its colour.
        let img = noise(3 * 4 * 5, 3);
        let cfg = SlicConfig {
            n_segments: 1000,
            ..SlicConfig::default()
        };
        let count = check(&img, 3, 4, 5, &cfg);
        assert!(count > 1 && count <= 20, "{count}");
    }

    #[test]
    fn constant_image_is_a_grid() {
        // No colour: the segments are the seeds' Voronoi cells, a grid.
        let (h, w) = (40, 40);
        let (labels, count) = slic(&vec![0.5; 3 * h * w], 3, h, w, &SlicConfig::default());
        assert_eq!(count, 100);
        assert_eq!(labels[0], 0);
        assert_eq!(labels[h * w - 1], 99);
        assert_eq!(labels[4 * w + 4], 0);
        assert_eq!(labels[4 * w + 5], 1);
    }

    #[test]
    fn empty_image_has_no_segments() {
        assert_eq!(slic(&[], 3, 0, 5, &SlicConfig::default()), (vec![], 0));
        assert_eq!(slic(&[], 1, 4, 0, &SlicConfig::default()), (vec![], 0));
    }

    #[test]
    fn regular_grid_matches_skimage_examples() {
        // The docstring's examples of skimage.util.regular_grid.
        assert_eq!(regular_grid([1, 20, 40], 8), [(0, 1), (5, 10), (5, 10)]);
        assert_eq!(regular_grid([1, 20, 40], 32), [(0, 1), (2, 5), (2, 5)]);
        assert_eq!(regular_grid([3, 20, 40], 8), [(1, 3), (5, 10), (5, 10)]);
        assert_eq!(regular_grid([1, 3, 3], 20), [(0, 1); 3]);
    }

    #[test]
    fn rgb2lab_matches_skimage_values() {
        // skimage.color.rgb2lab (float64) of white, black and pure red.
        let cases = [
            (
                [1.0, 1.0, 1.0],
                [100.0, -0.0024549378620508655, 0.004653421154054982],
            ),
            ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            (
                [1.0, 0.0, 0.0],
                [53.2405879437449, 80.0923082256922, 67.2027510444287],
            ),
        ];
        for (rgb, want) in cases {
            let got = rgb2lab(rgb);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "{rgb:?}: {got:?}"
                );
            }
        }
    }
}
