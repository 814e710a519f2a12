//! Figures written as PNG without a plotting library: an RGB canvas,
//! text laid out on its baseline with the embedded DejaVu Sans (each glyph
//! placed by its own bearing, so '.' and ',' sit on the line and 'g' hangs
//! below it), the heat maps' palettes (colorgrad's viridis and a diverging
//! map) and their overlay on an image, and the atomic
//! PNG write. The explanation figure (`explain.rs`) is built from them.

pub mod explain;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// An RGB image being drawn.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub px: Vec<[u8; 3]>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas {
            width,
            height,
            px: vec![[255; 3]; (width * height) as usize],
        }
    }

    /// Sets a pixel (outside the canvas: ignored).
    pub fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.width && (y as u32) < self.height {
            self.px[(y as u32 * self.width + x as u32) as usize] = c;
        }
    }

    /// Blends `c` over a pixel with coverage `a` in [0,1].
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f32) {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return;
        }
        let p = &mut self.px[(y as u32 * self.width + x as u32) as usize];
        for k in 0..3 {
            p[k] = (p[k] as f32 * (1.0 - a) + c[k] as f32 * a).round() as u8;
        }
    }

    /// An RGB image (CHW in [0,1], 1 or 3 channels) scaled by nearest
    /// neighbour into the `w` x `h` box at (x, y).
    #[allow(clippy::too_many_arguments)]
    pub fn image(
        &mut self,
        x: i64,
        y: i64,
        w: u32,
        h: u32,
        chw: &[f32],
        c: usize,
        ih: usize,
        iw: usize,
    ) {
        let hw = ih * iw;
        for dy in 0..h {
            let sy = (dy as usize * ih / h as usize).min(ih - 1);
            for dx in 0..w {
                let sx = (dx as usize * iw / w as usize).min(iw - 1);
                let v = |ch: usize| {
                    let ch = if c == 1 { 0 } else { ch };
                    (chw[ch * hw + sy * iw + sx].clamp(0.0, 1.0) * 255.0).round() as u8
                };
                self.put(x + dx as i64, y + dy as i64, [v(0), v(1), v(2)]);
            }
        }
    }

    /// A filled rectangle.
    pub fn rect(&mut self, x: i64, y: i64, w: u32, h: u32, c: [u8; 3]) {
        for dy in 0..h as i64 {
            for dx in 0..w as i64 {
                self.put(x + dx, y + dy, c);
            }
        }
    }

    /// Draws `text` of `size` px with its baseline at `baseline`, starting
    /// at `x` (`Align::Center`: centred on `x`). Returns its advance width.
    pub fn text(
        &mut self,
        x: f32,
        baseline: f32,
        size: f32,
        text: &str,
        c: [u8; 3],
        align: Align,
    ) -> f32 {
        let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
        let sf = font.as_scaled(PxScale::from(size));
        let width = text_width(text, size);
        let mut pen = match align {
            Align::Left => x,
            Align::Center => x - width / 2.0,
            Align::Right => x - width,
        };
        let mut last = None;
        for ch in text.chars() {
            let id = sf.glyph_id(ch);
            if let Some(prev) = last {
                pen += sf.kern(prev, id);
            }
            let g = id.with_scale_and_position(size, ab_glyph::point(pen, baseline));
            if let Some(o) = font.outline_glyph(g) {
                let b = o.px_bounds();
                o.draw(|gx, gy, a| {
                    self.blend(b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64, c, a)
                });
            }
            pen += sf.h_advance(id);
            last = Some(id);
        }
        width
    }
}

/// Horizontal placement of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Center,
    Right,
}

/// Rasterises `text` at `size` px with its baseline at y = 0 and its pen
/// starting at x = 0: `put(x, y, coverage)` for every pixel of ink.
pub fn glyphs(text: &str, size: f32, mut put: impl FnMut(i32, i32, f32)) {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let sf = font.as_scaled(PxScale::from(size));
    let mut pen = 0f32;
    let mut last = None;
    for ch in text.chars() {
        let id = sf.glyph_id(ch);
        if let Some(prev) = last {
            pen += sf.kern(prev, id);
        }
        let g = id.with_scale_and_position(size, ab_glyph::point(pen, 0.0));
        if let Some(o) = font.outline_glyph(g) {
            let b = o.px_bounds();
            o.draw(|gx, gy, a| put(b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32, a));
        }
        pen += sf.h_advance(id);
        last = Some(id);
    }
}

/// The font's ascent and descent (both >= 0) at `size` px.
pub fn line_metrics(size: f32) -> (f32, f32) {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let sf = font.as_scaled(PxScale::from(size));
    (sf.ascent(), -sf.descent())
}

/// The advance width of `text` at `size` px.
pub fn text_width(text: &str, size: f32) -> f32 {
    let font = FontRef::try_from_slice(FONT).expect("the embedded font parses");
    let sf = font.as_scaled(PxScale::from(size));
    let mut w = 0.0;
    let mut last = None;
    for ch in text.chars() {
        let id = sf.glyph_id(ch);
        if let Some(prev) = last {
            w += sf.kern(prev, id);
        }
        w += sf.h_advance(id);
        last = Some(id);
    }
    w
}

/// How a map's values become colours: magnitudes (>= 0) on viridis from 0
/// to the scale's maximum, signed values (Integrated Gradients, as Captum's
/// `visualize_image_attr(sign="all")` sums them over the channels) on the
/// diverging red-white-blue map from -max (red) through 0 (white) to +max
/// (blue). Viridis is `colorgrad`'s preset (a smooth spline through
/// matplotlib's colours); red-white-blue is matplotlib's `RdBu` as
/// matplotlib defines it: linear between its eleven colours, which
/// `colorgrad`'s `rd_bu` preset smooths away from white at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Palette {
    Magnitude,
    Signed,
}

impl Palette {
    /// The palette of a method's heat maps ([`crate::explain::Method::signed`]).
    pub fn of(method: crate::explain::Method) -> Palette {
        if method.signed() {
            Palette::Signed
        } else {
            Palette::Magnitude
        }
    }

    /// The colour of `v` on a scale of `max` (> 0; the largest |value|
    /// shown), as RGB in [0,1].
    pub fn colour(self, v: f32, max: f32) -> [f32; 3] {
        let r = if max > 0.0 && v.is_finite() {
            v / max
        } else {
            0.0
        };
        self.at(match self {
            Palette::Magnitude => r,
            Palette::Signed => 0.5 + 0.5 * r,
        })
    }

    /// The map at `t` in [0,1] (clamped), as RGB in [0,1].
    pub fn at(self, t: f32) -> [f32; 3] {
        use colorgrad::Gradient;
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let c = match self {
            Palette::Magnitude => viridis().at(t),
            Palette::Signed => rd_bu().at(t),
        };
        [c.r, c.g, c.b].map(|v| v.clamp(0.0, 1.0))
    }

    /// The smallest value of the scale for a maximum of `max`: 0, or -max.
    pub fn low(self, max: f32) -> f32 {
        match self {
            Palette::Magnitude => 0.0,
            Palette::Signed => -max,
        }
    }
}

/// colorgrad's viridis, built once.
fn viridis() -> &'static colorgrad::BasisGradient {
    static G: std::sync::OnceLock<colorgrad::BasisGradient> = std::sync::OnceLock::new();
    G.get_or_init(colorgrad::preset::viridis)
}

/// matplotlib's `RdBu`: linear through ColorBrewer's eleven colours, red
/// to white (#f7f7f7, at 0.5) to blue.
fn rd_bu() -> &'static colorgrad::LinearGradient {
    static G: std::sync::OnceLock<colorgrad::LinearGradient> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        const RD_BU: [u32; 11] = [
            0x67001f, 0xb2182b, 0xd6604d, 0xf4a582, 0xfddbc7, 0xf7f7f7, 0xd1e5f0, 0x92c5de,
            0x4393c3, 0x2166ac, 0x053061,
        ];
        let colors: Vec<colorgrad::Color> = RD_BU
            .iter()
            .map(|c| colorgrad::Color::from_rgba8((c >> 16) as u8, (c >> 8) as u8, *c as u8, 255))
            .collect();
        colorgrad::GradientBuilder::new()
            .colors(&colors)
            .build::<colorgrad::LinearGradient>()
            .expect("eleven colours make a gradient")
    })
}

/// The scale of a set of maps: the largest |value| (0 for none).
pub fn scale_max<'a>(maps: impl IntoIterator<Item = &'a [f32]>) -> f32 {
    maps.into_iter()
        .flat_map(|m| m.iter())
        .filter(|v| v.is_finite())
        .fold(0f32, |a, v| a.max(v.abs()))
}

/// A heat map over an image, as RGB CHW pixels in [0,1]: the image's
/// brightness at 30% under the colours of `map` (H x W) on `palette` with
/// the scale `max` (the explorer's heat maps and every figure's).
pub fn heat_overlay(
    map: &[f32],
    max: f32,
    palette: Palette,
    image: &[f32],
    channels: usize,
) -> Vec<f32> {
    let n = map.len();
    let mut out = vec![0f32; 3 * n];
    for (p, &v) in map.iter().enumerate() {
        let col = palette.colour(v, max);
        let gray = (0..channels)
            .map(|c| image.get(c * n + p).copied().unwrap_or(0.0))
            .sum::<f32>()
            / channels.max(1) as f32;
        for c in 0..3 {
            out[c * n + p] = 0.3 * gray + 0.7 * col[c];
        }
    }
    out
}

/// Writes the canvas as PNG, whole or not at all (a temporary file renamed
/// into place).
pub fn save_png(canvas: &Canvas, path: &Path) -> crate::Result<()> {
    let raw: Vec<u8> = canvas.px.iter().flat_map(|p| p.iter().copied()).collect();
    let img = image::RgbImage::from_raw(canvas.width, canvas.height, raw)
        .ok_or_else(|| crate::invalid!("bad figure buffer"))?;
    let tmp = path.with_extension("png.tmp");
    let written = img
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| crate::Error::io(&tmp, std::io::Error::other(e.to_string())))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| crate::Error::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A '.' sits on the baseline (its ink ends at the baseline, as an 'a'
    /// does), not at mid-height as plotters' text drew it; a 'g' hangs below.
    #[test]
    fn text_sits_on_its_baseline() {
        let ink_rows = |s: &str| {
            let mut c = Canvas::new(40, 40);
            c.text(5.0, 25.0, 20.0, s, [0, 0, 0], Align::Left);
            let rows: Vec<usize> = (0..40)
                .filter(|&y| (0..40).any(|x| c.px[y * 40 + x][0] < 128))
                .collect();
            (rows[0], *rows.last().unwrap())
        };
        let (_, dot_bottom) = ink_rows(".");
        let (a_top, a_bottom) = ink_rows("a");
        let (_, g_bottom) = ink_rows("g");
        assert!(
            (dot_bottom as i64 - a_bottom as i64).abs() <= 1,
            "dot {dot_bottom} vs a {a_bottom}"
        );
        assert!(dot_bottom >= 23, "the dot floats: bottom row {dot_bottom}");
        assert!(g_bottom > a_bottom + 2, "g does not descend");
        assert!(a_top > 10);
    }

    /// The palettes' ends are matplotlib's: viridis runs from #440154 to
    /// #fde725 (colorgrad's preset ends on #fee825), RdBu from #67001f
    /// through #f7f7f7 to #053061; a signed 0 is the white middle.
    #[test]
    fn palettes_match_matplotlibs_ends() {
        let rgb = |c: [f32; 3]| c.map(|v| (v * 255.0).round() as i32);
        let near = |a: [i32; 3], b: [i32; 3]| (0..3).all(|i| (a[i] - b[i]).abs() <= 2);
        assert!(near(
            rgb(Palette::Magnitude.colour(0.0, 5.0)),
            [0x44, 0x01, 0x54]
        ));
        assert!(near(
            rgb(Palette::Magnitude.colour(5.0, 5.0)),
            [0xfd, 0xe7, 0x25]
        ));
        assert!(near(
            rgb(Palette::Signed.colour(-2.0, 2.0)),
            [0x67, 0x00, 0x1f]
        ));
        let mid = rgb(Palette::Signed.colour(0.0, 2.0));
        assert!(near(mid, [0xf7, 0xf7, 0xf7]), "{mid:?}");
        assert!(near(
            rgb(Palette::Signed.colour(2.0, 2.0)),
            [0x05, 0x30, 0x61]
        ));
        // beyond the scale, NaN and an empty scale stay on the map's ends
        assert_eq!(
            Palette::Signed.colour(9.0, 2.0),
            Palette::Signed.colour(2.0, 2.0)
        );
        assert_eq!(
            Palette::Magnitude.colour(f32::NAN, 1.0),
            Palette::Magnitude.colour(0.0, 1.0)
        );
        assert_eq!(
            Palette::Signed.colour(1.0, 0.0),
            Palette::Signed.colour(0.0, 1.0)
        );
        assert_eq!(scale_max([&[1.0, -3.0][..], &[2.0, f32::NAN][..]]), 3.0);
    }
}
