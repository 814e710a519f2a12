//! Images as half blocks: each cell shows two pixels, '▀' with the top pixel
//! as foreground and the bottom pixel as background. Truecolor when the
//! terminal announces it (COLORTERM=truecolor or 24bit), else the nearest
//! colour of the xterm 256-colour palette (6x6x6 cube and gray ramp). With
//! NO_COLOR set (which crossterm honours: no colours reach the terminal) each
//! cell is a character of a brightness ramp instead.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    TrueColor,
    Ansi256,
    /// NO_COLOR: brightness as characters (" .:-=+*#%@").
    Monochrome,
}

impl ColorMode {
    /// From the environment (NO_COLOR, then COLORTERM).
    pub fn detect() -> ColorMode {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ColorMode::Monochrome;
        }
        Self::from_colorterm(std::env::var("COLORTERM").ok().as_deref())
    }
    pub fn from_colorterm(v: Option<&str>) -> ColorMode {
        match v.map(|s| s.to_ascii_lowercase()) {
            Some(s) if s.contains("truecolor") || s.contains("24bit") => ColorMode::TrueColor,
            _ => ColorMode::Ansi256,
        }
    }
    pub fn color(self, [r, g, b]: [u8; 3]) -> Color {
        match self {
            ColorMode::TrueColor => Color::Rgb(r, g, b),
            ColorMode::Ansi256 => Color::Indexed(ansi256(r, g, b)),
            ColorMode::Monochrome => Color::Reset,
        }
    }
}

const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

fn nearest_cube(v: u8) -> usize {
    let mut best = 0;
    for (i, c) in CUBE.iter().enumerate() {
        if (*c as i32 - v as i32).abs() < (CUBE[best] as i32 - v as i32).abs() {
            best = i;
        }
    }
    best
}

/// Nearest xterm-256 index (16..=255) by squared RGB distance.
pub fn ansi256(r: u8, g: u8, b: u8) -> u8 {
    let (ri, gi, bi) = (nearest_cube(r), nearest_cube(g), nearest_cube(b));
    let cube = (CUBE[ri], CUBE[gi], CUBE[bi]);
    let d = |(x, y, z): (u8, u8, u8)| {
        let dx = x as i32 - r as i32;
        let dy = y as i32 - g as i32;
        let dz = z as i32 - b as i32;
        dx * dx + dy * dy + dz * dz
    };
    let avg = (r as i32 + g as i32 + b as i32) / 3;
    let gi_ = ((avg - 8).max(0) / 10).min(23);
    let gv = (8 + 10 * gi_) as u8;
    if d((gv, gv, gv)) < d(cube) {
        232 + gi_ as u8
    } else {
        16 + 36 * ri as u8 + 6 * gi as u8 + bi as u8
    }
}

/// A CHW float image in [0,1] (1 or 3 channels) drawn with half blocks,
/// scaled to fit the area (integer upscaling, box downscaling) and centred.
#[derive(Clone, Copy)]
pub struct HalfBlock<'a> {
    pub pixels: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub mode: ColorMode,
}

impl HalfBlock<'_> {
    /// Size in cells the image takes in `area`: (columns, rows).
    pub fn fit(&self, area: Rect) -> (u16, u16) {
        let (w, h) = (self.width.max(1) as f64, self.height.max(1) as f64);
        let (aw, ah) = (area.width as f64, area.height as f64 * 2.0);
        let mut s = (aw / w).min(ah / h);
        if s >= 1.0 {
            s = s.floor();
        }
        let cols = (w * s).floor().max(1.0).min(aw) as u16;
        let rows = ((h * s).floor() / 2.0)
            .ceil()
            .max(1.0)
            .min(area.height as f64) as u16;
        (cols, rows)
    }

    /// RGB of the image at (x, y) of a `cols x 2*rows` grid (box average).
    fn pixel(&self, x: usize, y: usize, cols: usize, prows: usize) -> [u8; 3] {
        let (w, h) = (self.width, self.height);
        let x0 = x * w / cols;
        let x1 = ((x + 1) * w / cols).max(x0 + 1).min(w);
        let y0 = y * h / prows;
        let y1 = ((y + 1) * h / prows).max(y0 + 1).min(h);
        let plane = w * h;
        let mut rgb = [0u8; 3];
        for (ch, out) in rgb.iter_mut().enumerate() {
            let c = if self.channels >= 3 { ch } else { 0 };
            let mut s = 0.0f32;
            for yy in y0..y1 {
                for xx in x0..x1 {
                    s += self
                        .pixels
                        .get(c * plane + yy * w + xx)
                        .copied()
                        .unwrap_or(0.0);
                }
            }
            let v = s / ((y1 - y0) * (x1 - x0)) as f32;
            *out = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        rgb
    }
}

impl Widget for HalfBlock<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 || self.width == 0 || self.height == 0 {
            return;
        }
        let (cols, rows) = self.fit(area);
        let x0 = area.x + (area.width - cols) / 2;
        let y0 = area.y + (area.height - rows) / 2;
        let prows = rows as usize * 2;
        // Keep the aspect: the pixel grid is cols x (h*cols/w) pixel rows, padded.
        let img_prows = ((self.height * cols as usize) as f64 / self.width as f64)
            .round()
            .clamp(1.0, prows as f64) as usize;
        for r in 0..rows as usize {
            for c in 0..cols as usize {
                let top = 2 * r;
                let bot = 2 * r + 1;
                if self.mode == ColorMode::Monochrome {
                    // The cell's two pixels' mean brightness as a character.
                    let lum = |y: usize| {
                        let [r, g, b] = self.pixel(c, y, cols as usize, img_prows);
                        0.2989 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
                    };
                    let ys: Vec<usize> =
                        [top, bot].into_iter().filter(|&y| y < img_prows).collect();
                    if !ys.is_empty() {
                        let l = ys.iter().map(|&y| lum(y)).sum::<f32>() / ys.len() as f32 / 255.0;
                        const RAMP: &[char] = &[' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
                        let i = ((l * RAMP.len() as f32) as usize).min(RAMP.len() - 1);
                        buf[(x0 + c as u16, y0 + r as u16)].set_char(RAMP[i]);
                    }
                    continue;
                }
                let px = |y: usize| {
                    if y < img_prows {
                        Some(self.mode.color(self.pixel(c, y, cols as usize, img_prows)))
                    } else {
                        None
                    }
                };
                let cell = &mut buf[(x0 + c as u16, y0 + r as u16)];
                match (px(top), px(bot)) {
                    (Some(t), Some(b)) => {
                        cell.set_char('▀').set_fg(t).set_bg(b);
                    }
                    (Some(t), None) => {
                        cell.set_char('▀').set_fg(t).set_bg(Color::Reset);
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi256_known_colours() {
        assert_eq!(ansi256(0, 0, 0), 16);
        assert_eq!(ansi256(255, 255, 255), 231);
        assert_eq!(ansi256(255, 0, 0), 196);
        assert_eq!(ansi256(0, 0, 255), 21);
        // mid gray falls on the gray ramp
        assert_eq!(ansi256(128, 128, 128), 244);
    }

    #[test]
    fn colorterm_detection() {
        assert_eq!(
            ColorMode::from_colorterm(Some("truecolor")),
            ColorMode::TrueColor
        );
        assert_eq!(
            ColorMode::from_colorterm(Some("24bit")),
            ColorMode::TrueColor
        );
        assert_eq!(ColorMode::from_colorterm(None), ColorMode::Ansi256);
        assert_eq!(ColorMode::from_colorterm(Some("1")), ColorMode::Ansi256);
    }

    #[test]
    fn half_blocks_carry_top_and_bottom_pixels() {
        // 2x2 RGB image: top row red, bottom row blue.
        let mut px = vec![0.0f32; 12];
        px[0] = 1.0; // R (0,0)
        px[1] = 1.0; // R (0,1)
        px[8 + 2] = 1.0; // B (1,0)
        px[8 + 3] = 1.0; // B (1,1)
        let img = HalfBlock {
            pixels: &px,
            channels: 3,
            height: 2,
            width: 2,
            mode: ColorMode::TrueColor,
        };
        let area = Rect::new(0, 0, 2, 1);
        let mut buf = Buffer::empty(area);
        img.render(area, &mut buf);
        let c = &buf[(0, 0)];
        assert_eq!(c.symbol(), "▀");
        assert_eq!(c.fg, Color::Rgb(255, 0, 0));
        assert_eq!(c.bg, Color::Rgb(0, 0, 255));
    }

    /// NO_COLOR: brightness as characters, so the image stays visible.
    #[test]
    fn monochrome_draws_a_brightness_ramp() {
        // 4x2 gray image (1 channel): black, dark, light, white columns.
        let px = [0.0f32, 0.3, 0.7, 1.0, 0.0, 0.3, 0.7, 1.0];
        let img = HalfBlock {
            pixels: &px,
            channels: 1,
            height: 2,
            width: 4,
            mode: ColorMode::Monochrome,
        };
        let area = Rect::new(0, 0, 4, 1);
        let mut buf = Buffer::empty(area);
        img.render(area, &mut buf);
        let row: String = (0..4).map(|x| buf[(x, 0)].symbol().to_string()).collect();
        assert_eq!(row, " -#@");
        assert!((0..4).all(|x| buf[(x, 0)].fg == Color::Reset));
    }

    #[test]
    fn fit_upscales_by_integers_and_keeps_aspect() {
        let px = vec![0.0f32; 28 * 28];
        let img = HalfBlock {
            pixels: &px,
            channels: 1,
            height: 28,
            width: 28,
            mode: ColorMode::Ansi256,
        };
        assert_eq!(img.fit(Rect::new(0, 0, 60, 30)), (56, 28));
        assert_eq!(img.fit(Rect::new(0, 0, 30, 20)), (28, 14));
        let (c, r) = img.fit(Rect::new(0, 0, 20, 20));
        assert_eq!(c, 20);
        assert_eq!(r, 10);
    }
}
