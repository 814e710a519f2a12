//! PIL's resize of 8-bit images, bit for bit: what torchvision's `Resize`
//! does to a PIL image. Bilinear and bicubic are Pillow's `Resample.c`
//! (separable passes, coefficients normalised per output pixel, 22-bit
//! fixed point, 8-bit rounding between the passes); nearest is Pillow's
//! `ImagingScaleAffine` (source positions accumulated in doubles).
//!
//! Which pass runs first changes some pixels by one level. Pillow 13 runs
//! the vertical pass first when the height shrinks by more than twice as
//! many pixels as the width (`in_h - out_h > 2 (in_w - out_w)`); Pillow 12
//! and older always run the horizontal pass first. [`Order`] picks one;
//! the default is Pillow 13's (what `pip install torchvision` brings).
//! Tested against both (tests/fixtures/make_resample.py).

/// The resampling filter (torchvision's `InterpolationMode` on PIL images).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Nearest => 0.0,
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// The order of the two passes (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// Pillow 13: vertical first when the height shrinks by more than twice
    /// as many pixels as the width.
    #[default]
    Pillow13,
    /// Pillow 12 and older: always horizontal first.
    HorizontalFirst,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The most pixels an image may have: PIL's `DecompressionBombError`
/// threshold (twice `Image.MAX_IMAGE_PIXELS`), for decoded images
/// (`folder::MAX_PIXELS`) and resized ones alike.
pub const MAX_PIXELS: u64 = 178_956_970;

/// A rectangle of an image: columns `x..x + w`, rows `y..y + h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl Window {
    /// The whole of a `w`x`h` image.
    pub fn whole(w: usize, h: usize) -> Self {
        Window { x: 0, y: 0, w, h }
    }

    /// Whether `other` lies inside this window.
    pub fn contains(&self, other: &Window) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.x + other.w <= self.x + self.w
            && other.y + other.h <= self.y + self.h
    }
}

/// Per output position: the first source index, the taps' fixed-point weights.
struct Coeffs {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a full box.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // (int) truncates toward zero, as C does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for x in 0..n {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs { bounds, ksize, k }
}

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// An interleaved image region: `w`x`h` pixels of `c` channels.
struct Plane<'a> {
    px: &'a [u8],
    w: usize,
    h: usize,
    c: usize,
}

/// Horizontal pass: output columns `cols` of every row of `src`, whose
/// first column is source column `x0`.
fn horizontal(src: &Plane, x0: usize, cols: std::ops::Range<usize>, co: &Coeffs) -> Vec<u8> {
    let (c, out_w) = (src.c, cols.len());
    let mut out = vec![0u8; out_w * src.h * c];
    #[cfg(target_arch = "x86_64")]
    if c == 3 && std::arch::is_x86_feature_detected!("sse4.1") {
        // SAFETY: the CPU has SSE4.1 (checked just above).
        unsafe { horizontal_rgb_sse41(src, x0, cols, co, &mut out) };
        return out;
    }
    for y in 0..src.h {
        let row = &src.px[y * src.w * c..(y + 1) * src.w * c];
        let orow = &mut out[y * out_w * c..(y + 1) * out_w * c];
        for (o, xx) in cols.clone().enumerate() {
            let (xmin, n) = co.bounds[xx];
            let k = &co.k[xx * co.ksize..xx * co.ksize + n];
            let taps = &row[(xmin - x0) * c..(xmin - x0 + n) * c];
            for ch in 0..c {
                let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                for (x, &kx) in k.iter().enumerate() {
                    ss = ss.wrapping_add(taps[x * c + ch] as i32 * kx);
                }
                orow[o * c + ch] = clip8(ss);
            }
        }
    }
    out
}

/// [`horizontal`] of an RGB image with SSE4.1: one tap of the three
/// channels per multiply, four rows at a time (they share the taps). The
/// same 32-bit integer sums, so the same values; a plain loop spent a
/// third of a folder's first read here.
///
/// # Safety
/// The CPU must support SSE4.1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn horizontal_rgb_sse41(
    src: &Plane,
    x0: usize,
    cols: std::ops::Range<usize>,
    co: &Coeffs,
    out: &mut [u8],
) {
    let mut y = 0;
    while y + 4 <= src.h {
        rows_rgb_sse41::<4>(src, y, x0, cols.clone(), co, out);
        y += 4;
    }
    while y < src.h {
        rows_rgb_sse41::<1>(src, y, x0, cols.clone(), co, out);
        y += 1;
    }
}

/// Rows `y..y + R` of [`horizontal_rgb_sse41`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
#[inline]
fn rows_rgb_sse41<const R: usize>(
    src: &Plane,
    y: usize,
    x0: usize,
    cols: std::ops::Range<usize>,
    co: &Coeffs,
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    let (stride, out_w) = (src.w * 3, cols.len());
    let px = src.px;
    // Four bytes at `i`: a pixel and the next one's first channel, whose
    // sum is discarded (the image's last pixel is read alone).
    let load = |i: usize| -> __m128i {
        let v = match px.get(i..i + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => u32::from_le_bytes([px[i], px[i + 1], px[i + 2], 0]),
        };
        _mm_cvtepu8_epi32(_mm_cvtsi32_si128(v as i32))
    };
    for (o, xx) in cols.enumerate() {
        let (xmin, n) = co.bounds[xx];
        let k = &co.k[xx * co.ksize..xx * co.ksize + n];
        let base = y * stride + (xmin - x0) * 3;
        let mut acc = [_mm_set1_epi32(1 << (PRECISION_BITS - 1)); R];
        if base + (R - 1) * stride + 3 * n < px.len() {
            // Every 4-byte read below is inside `px` (checked once here).
            let p0 = px.as_ptr();
            for (t, &kt) in k.iter().enumerate() {
                let kv = _mm_set1_epi32(kt);
                for (r, a) in acc.iter_mut().enumerate() {
                    // SAFETY: base + r * stride + 3 * t + 4 <= the bound
                    // checked above (t < n, r < R).
                    let v = unsafe {
                        std::ptr::read_unaligned(p0.add(base + r * stride + 3 * t) as *const i32)
                    };
                    let p = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(v));
                    *a = _mm_add_epi32(*a, _mm_mullo_epi32(p, kv));
                }
            }
        } else {
            for (t, &kt) in k.iter().enumerate() {
                let kv = _mm_set1_epi32(kt);
                for (r, a) in acc.iter_mut().enumerate() {
                    let p = load(base + r * stride + 3 * t);
                    *a = _mm_add_epi32(*a, _mm_mullo_epi32(p, kv));
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            // clip8: an arithmetic shift, then saturation to 0..=255.
            let s = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(*a);
            let b = _mm_packus_epi16(_mm_packs_epi32(s, s), _mm_setzero_si128());
            let v = (_mm_cvtsi128_si32(b) as u32).to_le_bytes();
            let d = ((y + r) * out_w + o) * 3;
            out[d..d + 3].copy_from_slice(&v[..3]);
        }
    }
}

/// Vertical pass: output rows `rows` over every column of `src`, whose
/// first row is source row `y0`.
fn vertical(src: &Plane, y0: usize, rows: std::ops::Range<usize>, co: &Coeffs) -> Vec<u8> {
    filter_lines(src.px, src.w * src.c, y0, rows, co)
}

/// One pass over lines of `line` bytes: output line `o` is the weighted
/// sum of source lines `bounds[outs[o]]`, the first of `src` being line
/// `first`, rounded and clipped as Pillow does.
fn filter_lines(
    src: &[u8],
    line: usize,
    first: usize,
    outs: std::ops::Range<usize>,
    co: &Coeffs,
) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { filter_lines_avx2(src, line, first, outs, co) };
    }
    filter_lines_any(src, line, first, outs, co)
}

/// [`filter_lines`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn filter_lines_avx2(
    src: &[u8],
    line: usize,
    first: usize,
    outs: std::ops::Range<usize>,
    co: &Coeffs,
) -> Vec<u8> {
    filter_lines_any(src, line, first, outs, co)
}

#[inline(always)]
fn filter_lines_any(
    src: &[u8],
    line: usize,
    first: usize,
    outs: std::ops::Range<usize>,
    co: &Coeffs,
) -> Vec<u8> {
    let mut out = vec![0u8; outs.len() * line];
    let mut acc = vec![0i32; line];
    for (o, yy) in outs.enumerate() {
        let (ymin, n) = co.bounds[yy];
        let k = &co.k[yy * co.ksize..yy * co.ksize + n];
        acc.fill(1 << (PRECISION_BITS - 1));
        for (y, &ky) in k.iter().enumerate() {
            let r = ymin + y - first;
            let row = &src[r * line..(r + 1) * line];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(v as i32 * ky);
            }
        }
        for (d, &a) in out[o * line..(o + 1) * line].iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

/// The source positions output positions `r` read: (first, end).
fn span(co: &Coeffs, r: &std::ops::Range<usize>) -> (usize, usize) {
    let first = co.bounds[r.start].0;
    let end = r
        .clone()
        .map(|i| co.bounds[i].0 + co.bounds[i].1)
        .max()
        .unwrap_or(first);
    (first, end)
}

/// The source region that [`resize_crop`] with these arguments reads: the
/// columns and rows under the taps of the window's pixels (the whole image
/// for nearest neighbour).
pub fn source_window(
    (w, h): (usize, usize),
    (out_w, out_h): (usize, usize),
    filter: Filter,
    (left, top): (usize, usize),
    (cw, ch): (usize, usize),
) -> Window {
    if filter == Filter::Nearest && (w, h) != (out_w, out_h) {
        return Window::whole(w, h);
    }
    let axis = |size: usize, out: usize, start: usize, len: usize| -> (usize, usize) {
        if size == out {
            (start, start + len)
        } else {
            span(&coeffs(size, out, filter), &(start..start + len))
        }
    };
    let (x0, x1) = axis(w, out_w, left, cw);
    let (y0, y1) = axis(h, out_h, top, ch);
    Window {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    }
}

/// The `cw`x`ch` window at (`left`, `top`) of PIL's resize of a `w`x`h`
/// image to `out_w`x`out_h`, computing only what the window needs (each
/// value as the full resize computes it). `src` holds the region `win` of
/// the image, which must contain [`source_window`]'s region.
#[allow(clippy::too_many_arguments)]
pub fn resize_crop(
    src: &[u8],
    (w, h, c): (usize, usize, usize),
    win: Window,
    (out_w, out_h): (usize, usize),
    filter: Filter,
    order: Order,
    (left, top): (usize, usize),
    (cw, ch): (usize, usize),
) -> Vec<u8> {
    debug_assert_eq!(src.len(), win.w * win.h * c);
    debug_assert!(left + cw <= out_w && top + ch <= out_h);
    debug_assert!(win.contains(&source_window(
        (w, h),
        (out_w, out_h),
        filter,
        (left, top),
        (cw, ch)
    )));
    let (cols, rows) = (left..left + cw, top..top + ch);
    if (w, h) == (out_w, out_h) {
        return crop(
            src,
            (win.w, win.h, c),
            (left - win.x, top - win.y),
            (cw, ch),
        );
    }
    if filter == Filter::Nearest {
        // The window is the whole image (`source_window`).
        let full = nearest(src, (w, h, c), (out_w, out_h));
        return crop(&full, (out_w, out_h, c), (left, top), (cw, ch));
    }
    let vertical_first =
        order == Order::Pillow13 && out_h < h && (h - out_h) as i64 > 2 * (w as i64 - out_w as i64);
    let (need_h, need_v) = (out_w != w, out_h != h);
    if vertical_first {
        let hc = coeffs(w, out_w, filter);
        let (x0, x1) = if need_h {
            span(&hc, &cols)
        } else {
            (left, left + cw)
        };
        // The source columns the horizontal pass reads, every row.
        let sub = crop(src, (win.w, win.h, c), (x0 - win.x, 0), (x1 - x0, win.h));
        let sub = Plane {
            px: &sub,
            w: x1 - x0,
            h: win.h,
            c,
        };
        let tmp = vertical(&sub, win.y, rows, &coeffs(h, out_h, filter));
        let tmp = Plane {
            px: &tmp,
            w: x1 - x0,
            h: ch,
            c,
        };
        if need_h {
            horizontal(&tmp, x0, cols, &hc)
        } else {
            tmp.px.to_vec()
        }
    } else {
        let vc = coeffs(h, out_h, filter);
        let (y0, y1) = if need_v {
            span(&vc, &rows)
        } else {
            (top, top + ch)
        };
        let band = Plane {
            px: &src[(y0 - win.y) * win.w * c..(y1 - win.y) * win.w * c],
            w: win.w,
            h: y1 - y0,
            c,
        };
        let tmp = if need_h {
            horizontal(&band, win.x, cols, &coeffs(w, out_w, filter))
        } else {
            crop(
                band.px,
                (win.w, y1 - y0, c),
                (left - win.x, 0),
                (cw, y1 - y0),
            )
        };
        let tmp = Plane {
            px: &tmp,
            w: cw,
            h: y1 - y0,
            c,
        };
        if need_v {
            vertical(&tmp, y0, rows, &vc)
        } else {
            tmp.px.to_vec()
        }
    }
}

/// PIL's `ImagingScaleAffine` (nearest neighbour) positions for one axis;
/// `None` where the accumulated position leaves the image (PIL leaves
/// such a pixel 0).
fn nearest_index(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    let a = in_size as f64 / out_size as f64;
    let mut pos = a * 0.5;
    (0..out_size)
        .map(|_| {
            let i = (pos >= 0.0 && (pos as usize) < in_size).then_some(pos as usize);
            pos += a;
            i
        })
        .collect()
}

/// PIL's nearest-neighbour resize.
fn nearest(
    src: &[u8],
    (w, _h, c): (usize, usize, usize),
    (out_w, out_h): (usize, usize),
) -> Vec<u8> {
    let xs = nearest_index(w, out_w);
    let ys = nearest_index(src.len() / (w * c), out_h);
    let mut out = vec![0u8; out_w * out_h * c];
    for (oy, y) in ys.iter().enumerate() {
        let Some(y) = y else { continue };
        let row = &src[y * w * c..(y + 1) * w * c];
        for (ox, x) in xs.iter().enumerate() {
            if let Some(x) = x {
                out[(oy * out_w + ox) * c..(oy * out_w + ox + 1) * c]
                    .copy_from_slice(&row[x * c..(x + 1) * c]);
            }
        }
    }
    out
}

/// Resizes an interleaved 8-bit image (`c` channels, `w`x`h`) to
/// `out_w`x`out_h` exactly as PIL's `Image.resize` does. Sizes must be >= 1.
pub fn resize(
    src: &[u8],
    (w, h, c): (usize, usize, usize),
    (out_w, out_h): (usize, usize),
    filter: Filter,
    order: Order,
) -> Vec<u8> {
    resize_crop(
        src,
        (w, h, c),
        Window::whole(w, h),
        (out_w, out_h),
        filter,
        order,
        (0, 0),
        (out_w, out_h),
    )
}

/// torchvision's `Resize(n)` output size for an image of `w`x`h`: the
/// shorter side becomes `n`, the longer `int(n * long / short)` (a Python
/// float division, truncated). Returns (width, height).
pub fn shorter_side_size(w: usize, h: usize, n: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (n as f64 * long as f64 / short as f64) as usize;
    if w <= h {
        (n, new_long)
    } else {
        (new_long, n)
    }
}

/// torchvision's `CenterCrop` offsets (left, top) of a `cw`x`ch` crop of a
/// `w`x`h` image: `int(round((size - crop) / 2.0))`, Python's round (half to even).
pub fn center_crop_offsets(w: usize, h: usize, cw: usize, ch: usize) -> (usize, usize) {
    let off = |size: usize, crop: usize| -> usize {
        let d = (size - crop) as f64 / 2.0;
        let r = d.round();
        // Python rounds halves to even.
        let r = if (d - d.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
            r - 1.0
        } else {
            r
        };
        r as usize
    };
    (off(w, cw), off(h, ch))
}

/// Crops an interleaved image.
pub fn crop(
    src: &[u8],
    (w, _h, c): (usize, usize, usize),
    (left, top): (usize, usize),
    (cw, ch): (usize, usize),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(cw * ch * c);
    for y in top..top + ch {
        out.extend_from_slice(&src[(y * w + left) * c..(y * w + left + cw) * c]);
    }
    out
}
