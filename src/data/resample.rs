//! Resizing 8-bit images exactly as PIL does (`Image.resize`, which is what
//! torchvision's `Resize` does to a PIL image), and torchvision's eval
//! preprocessing geometry: the shorter side resized to N (the longer one
//! `int(N * long / short)`), then a center crop with torchvision's rounding.
//!
//! A port of PIL's `libImaging/Resample.c` for 8 bits per channel: separable,
//! the horizontal pass first (its result rounded to 8 bits), each output
//! pixel a weighted sum over the filter's support scaled by the reduction
//! factor (antialiasing), weights normalised then held in fixed point with
//! 22 bits of precision. Nearest neighbour is PIL's scaling transform of
//! the pixel centres. Checked pixel for pixel against PIL and torchvision
//! (`tests/fixtures/make_resample.py`).

/// PIL's resampling filters (torchvision's `InterpolationMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
}

impl std::str::FromStr for Filter {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "nearest" => Ok(Filter::Nearest),
            "bilinear" => Ok(Filter::Bilinear),
            "bicubic" => Ok(Filter::Bicubic),
            _ => Err(crate::invalid!(
                "unknown interpolation '{s}' (available: nearest, bilinear, bicubic)"
            )),
        }
    }
}

/// 32 - 8 - 2 bits, as PIL's `PRECISION_BITS`.
const PRECISION_BITS: u32 = 22;

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
            Filter::Bilinear => (1.0 - x).max(0.0),
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

/// An 8-bit image, `channels` interleaved values per pixel, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Image8 {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Per output index: the first input index and the fixed-point weights.
struct Coeffs {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// PIL's `precompute_coeffs` and `normalize_coeffs_8bpc` for `in_size ->
/// out_size` over the whole input.
fn coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let (mut first, mut weights) = (Vec::with_capacity(out_size), Vec::with_capacity(out_size));
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // (int)(v + 0.5) in C: truncation toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut w: Vec<f64> = (0..n)
            .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = w.iter().sum();
        if total != 0.0 {
            for v in &mut w {
                *v /= total;
            }
        }
        let one = (1u32 << PRECISION_BITS) as f64;
        weights.push(
            w.iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect(),
        );
        first.push(xmin);
    }
    Coeffs { first, weights }
}

/// PIL's `clip8`: the fixed-point sum back to 0..255.
fn clip8(v: i32) -> u8 {
    if v >= (1 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// `img` resized to `width x height` as PIL's `Image.resize(size, filter)`.
pub fn resize(img: &Image8, width: usize, height: usize, filter: Filter) -> Image8 {
    let c = img.channels;
    if (width, height) == (img.width, img.height)
        || img.data.is_empty()
        || width == 0
        || height == 0
    {
        return Image8 {
            width,
            height,
            channels: c,
            data: if (width, height) == (img.width, img.height) {
                img.data.clone()
            } else {
                vec![0; width * height * c]
            },
        };
    }
    if filter == Filter::Nearest {
        // PIL's ImagingScaleAffine: the source position of the pixel
        // centres, accumulated by repeated addition as PIL does (the float
        // sum, not (x + 0.5) * scale, decides which pixel a centre hits).
        let positions = |n_out: usize, n_in: usize| -> Vec<usize> {
            let a = n_in as f64 / n_out as f64;
            let mut v = a * 0.5;
            (0..n_out)
                .map(|_| {
                    let i = (v as usize).min(n_in - 1);
                    v += a;
                    i
                })
                .collect()
        };
        let (xs, ys) = (positions(width, img.width), positions(height, img.height));
        let mut data = Vec::with_capacity(width * height * c);
        for &yi in &ys {
            for &xi in &xs {
                let o = (yi * img.width + xi) * c;
                data.extend_from_slice(&img.data[o..o + c]);
            }
        }
        return Image8 {
            width,
            height,
            channels: c,
            data,
        };
    }
    let horiz = coeffs(img.width, width, filter);
    let vert = coeffs(img.height, height, filter);
    // Only the rows the vertical pass reads go through the horizontal one.
    let (y0, y1) = if width != img.width {
        let last = height - 1;
        (vert.first[0], vert.first[last] + vert.weights[last].len())
    } else {
        (0, img.height)
    };
    let half = 1i32 << (PRECISION_BITS - 1);
    let mid: Vec<u8>;
    let (mid_data, mid_w, row0) = if width != img.width {
        let rows = y1 - y0;
        let mut out = vec![0u8; rows * width * c];
        for yy in 0..rows {
            let src = &img.data[(yy + y0) * img.width * c..][..img.width * c];
            for xx in 0..width {
                let (xmin, k) = (horiz.first[xx], &horiz.weights[xx]);
                for ch in 0..c {
                    let mut ss = half;
                    for (x, &w) in k.iter().enumerate() {
                        ss += src[(x + xmin) * c + ch] as i32 * w;
                    }
                    out[(yy * width + xx) * c + ch] = clip8(ss);
                }
            }
        }
        mid = out;
        (&mid[..], width, y0)
    } else {
        (&img.data[..], img.width, 0)
    };
    if height == img.height {
        return Image8 {
            width: mid_w,
            height,
            channels: c,
            data: mid_data[..mid_w * height * c].to_vec(),
        };
    }
    let mut out = vec![0u8; width * height * c];
    for yy in 0..height {
        let (ymin, k) = (vert.first[yy] - row0, &vert.weights[yy]);
        for xx in 0..width {
            for ch in 0..c {
                let mut ss = half;
                for (y, &w) in k.iter().enumerate() {
                    ss += mid_data[((y + ymin) * mid_w + xx) * c + ch] as i32 * w;
                }
                out[(yy * width + xx) * c + ch] = clip8(ss);
            }
        }
    }
    Image8 {
        width,
        height,
        channels: c,
        data: out,
    }
}

/// torchvision's `Resize(size)` output size for an image of `w x h`: the
/// shorter side becomes `size`, the longer `int(size * long / short)`.
pub fn shorter_side_size(w: usize, h: usize, size: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    if short == size || short == 0 {
        return (w, h);
    }
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `CenterCrop((ch, cw))` of an image at least that large:
/// the offsets `int(round((h - ch) / 2))` (Python's round, half to even).
pub fn center_crop(img: &Image8, cw: usize, ch: usize) -> Image8 {
    let round_half_even = |v: f64| {
        let r = v.round();
        if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
            r - v.signum()
        } else {
            r
        }
    };
    let top = round_half_even((img.height as f64 - ch as f64) / 2.0).max(0.0) as usize;
    let left = round_half_even((img.width as f64 - cw as f64) / 2.0).max(0.0) as usize;
    let c = img.channels;
    let mut data = Vec::with_capacity(cw * ch * c);
    for y in top..top + ch {
        data.extend_from_slice(&img.data[(y * img.width + left) * c..][..cw * c]);
    }
    Image8 {
        width: cw,
        height: ch,
        channels: c,
        data,
    }
}

/// torchvision's eval preprocessing geometry (`Resize(resize)` then
/// `CenterCrop(crop)`), before the division by 255. `crop` must not exceed
/// the resized image (checked by the caller: torchvision would pad).
pub fn resize_and_crop(img: &Image8, resize_to: usize, crop: usize, filter: Filter) -> Image8 {
    let (w, h) = shorter_side_size(img.width, img.height, resize_to);
    let r = resize(img, w, h, filter);
    center_crop(&r, crop.min(r.width), crop.min(r.height))
}
