//! The plotting plumbing every exported chart shares: the embedded font,
//! rendering into an RGB buffer saved as PNG, text drawn on its baseline
//! ([`Baseline`]: plotters' own ab_glyph text lifts '.' to mid-height), and
//! axis labels.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};
use std::path::Path;
use std::sync::OnceLock;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
pub(super) const FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters (once).
pub fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded chart font could not be loaded"))
    }
}

/// plotters' bitmap backend with its text drawn by [`crate::figure`]:
/// every glyph placed by its own bearing on one baseline (plotters' ab_glyph
/// text shifts each glyph by half the font size from its top, which puts a
/// '.' at mid-height: "μ=0·07"). Everything else is the bitmap backend's.
pub struct Baseline<'a>(pub BitMapBackend<'a>);

type BackendErr<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Baseline<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), BackendErr<'a>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), BackendErr<'a>> {
        self.0.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Result<(), BackendErr<'a>> {
        self.0.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
    ) -> Result<(), BackendErr<'a>> {
        self.0.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), BackendErr<'a>> {
        self.0.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Result<(), BackendErr<'a>> {
        self.0.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Result<(), BackendErr<'a>> {
        self.0.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        s: &S,
    ) -> Result<(), BackendErr<'a>> {
        self.0.fill_polygon(vert, s)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), BackendErr<'a>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), BackendErr<'a>> {
        let size = style.size() as f32;
        let (asc, desc) = crate::figure::line_metrics(size);
        Ok((
            crate::figure::text_width(text, size).ceil() as u32,
            (asc + desc).ceil() as u32,
        ))
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<(), BackendErr<'a>> {
        use plotters_backend::text_anchor::{HPos, VPos};
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size() as f32;
        let (asc, desc) = crate::figure::line_metrics(size);
        let width = crate::figure::text_width(text, size);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        let top = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -(asc + desc) / 2.0,
            VPos::Bottom => -(asc + desc),
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut pixels = Vec::new();
        crate::figure::glyphs(text, size, |x, y, a| pixels.push((x, y, a)));
        for (x, y, a) in pixels {
            let (tx, ty) = trans.transform(x + dx.round() as i32, y + (asc + top).round() as i32);
            let (px, py) = (pos.0 + tx, pos.1 + ty);
            if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                self.0.draw_pixel(
                    (px, py),
                    BackendColor {
                        alpha: color.alpha * a as f64,
                        rgb: color.rgb,
                    },
                )?;
            }
        }
        Ok(())
    }
}

/// The drawing area every exported chart draws on.
pub type Area<'a> = DrawingArea<Baseline<'a>, Shift>;

/// Renders into an RGB buffer and saves it as PNG (atomically).
pub(super) fn save_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = Baseline(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("bad image buffer"))?;
    // Written whole or not at all: a temporary file renamed into place.
    let tmp = path.with_extension("png.tmp");
    let written = img
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(anyhow::Error::from)
        .and_then(|_| std::fs::rename(&tmp, path).map_err(anyhow::Error::from));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

pub(super) fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("chart: {e:?}")
}

/// A count axis label: whole numbers only (no "200.0", no "0.5 samples").
pub(super) fn count_label(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through plotters' text API, the '.' of "x." ends on the same row as
    /// the 'x' (plotters' own ab_glyph text drew it at mid-height: "μ=0·07").
    #[test]
    fn chart_text_sits_on_its_baseline() {
        register_font().unwrap();
        let (w, h) = (80u32, 40u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root = Baseline(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
            let style = TextStyle::from((FAMILY, 24).into_font()).color(&BLACK);
            root.draw_text("x.", &style, (5, 5)).unwrap();
            root.present().unwrap();
        }
        let dark = |x: u32, y: u32| buf[((y * w + x) * 3) as usize] < 128;
        let inked: Vec<bool> = (0..w).map(|x| (0..h).any(|y| dark(x, y))).collect();
        let x_start = inked.iter().position(|&b| b).unwrap();
        let x_end = x_start + inked[x_start..].iter().position(|&b| !b).unwrap();
        let dot_start = x_end + inked[x_end..].iter().position(|&b| b).unwrap();
        let bottom = |cols: std::ops::Range<usize>| {
            (0..h)
                .filter(|&y| cols.clone().any(|x| dark(x as u32, y)))
                .max()
                .unwrap()
        };
        let (xb, db) = (bottom(x_start..x_end), bottom(dot_start..w as usize));
        assert!(
            (xb as i64 - db as i64).abs() <= 1,
            "'x' ends on row {xb}, '.' on row {db}"
        );
    }
}
