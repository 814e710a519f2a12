//! The explanation figure (the semantic-continuity paper's Figures 12–14):
//! one row per sample, the image, then one column per model with its
//! explanation as a heat map over the image (30% image brightness under the
//! palette: viridis for magnitudes, red-white-blue for signed maps), one colour scale per row shared by the models (or one per
//! image), a colour bar per row, and captions: the method and scaling, the
//! model names, the true label and each model's prediction.

use super::{heat_overlay, scale_max, text_width, Align, Canvas, Palette};

/// One model's column.
pub struct Column<'a> {
    pub name: &'a str,
    /// Per sample, its map (H x W, row-major; >= 0 unless the palette is
    /// signed).
    pub maps: &'a [Vec<f32>],
    pub preds: &'a [u32],
}

/// How the heat maps are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// One scale per row, shared by every model (they can be compared).
    Row,
    /// Each map scaled to its own largest value.
    Image,
}

/// The images and what the figure says of them.
pub struct Figure<'a> {
    /// N images, CHW in [0,1] each, `channels` x `height` x `width`.
    pub images: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub labels: &'a [u32],
    pub class_names: &'a [String],
    pub title: &'a str,
    pub scale: Scale,
    pub palette: Palette,
}

const CELL: usize = 128;
const GAP: i64 = 10;
const CAPTION: i64 = 20;
const BAR: i64 = 14;
const FONT: f32 = 13.0;

/// The figure as a canvas.
pub fn draw(fig: &Figure, columns: &[Column]) -> Canvas {
    let n = fig.labels.len();
    let (h, w) = (fig.height.max(1), fig.width.max(1));
    let scale = (CELL as f32 / h.max(w) as f32).max(0.25);
    let (ch, cw) = (
        ((h as f32 * scale).round() as i64).max(8),
        ((w as f32 * scale).round() as i64).max(8),
    );
    let class = |c: u32| {
        fig.class_names
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    let cols = 1 + columns.len() as i64;
    let bar_w = if fig.scale == Scale::Row { BAR + 60 } else { 0 };
    let width = GAP + cols * (cw + GAP) + bar_w;
    let header = 2 * CAPTION + GAP;
    let height = header + n as i64 * (ch + CAPTION + GAP) + GAP;
    let mut c = Canvas::new(width as u32, height as u32);
    let black = [0, 0, 0];
    let dim = [90, 90, 90];
    let scaling = match fig.scale {
        Scale::Row => "one colour scale per row (shared by the models)",
        Scale::Image => "each map scaled to its own maximum",
    };
    c.text(
        GAP as f32,
        16.0,
        14.0,
        &format!("{} · {scaling}", fig.title),
        black,
        Align::Left,
    );
    let name_y = (CAPTION + 16) as f32;
    c.text(
        (GAP + cw / 2) as f32,
        name_y,
        FONT,
        "image",
        dim,
        Align::Center,
    );
    for (k, col) in columns.iter().enumerate() {
        let x = GAP + (k as i64 + 1) * (cw + GAP) + cw / 2;
        let name = fit(col.name, cw as f32 + GAP as f32 - 2.0);
        c.text(x as f32, name_y, FONT, &name, black, Align::Center);
    }
    let hw = h * w;
    let il = fig.channels * hw;
    for i in 0..n {
        let y0 = header + i as i64 * (ch + CAPTION + GAP);
        let img = &fig.images[i * il..(i + 1) * il];
        c.image(GAP, y0, cw as u32, ch as u32, img, fig.channels, h, w);
        let cap_y = (y0 + ch + 15) as f32;
        let label = fit(
            &format!("label: {}", class(fig.labels[i])),
            cw as f32 + GAP as f32,
        );
        c.text(
            (GAP + cw / 2) as f32,
            cap_y,
            FONT - 1.0,
            &label,
            dim,
            Align::Center,
        );
        let row_max = scale_max(
            columns
                .iter()
                .filter_map(|col| col.maps.get(i))
                .map(|m| m.as_slice()),
        );
        for (k, col) in columns.iter().enumerate() {
            let x0 = GAP + (k as i64 + 1) * (cw + GAP);
            let Some(map) = col.maps.get(i).filter(|m| m.len() == hw) else {
                continue;
            };
            let max = match fig.scale {
                Scale::Row => row_max,
                Scale::Image => scale_max([map.as_slice()]),
            };
            let px = heat_overlay(map, max, fig.palette, img, fig.channels);
            c.image(x0, y0, cw as u32, ch as u32, &px, 3, h, w);
            if let Some(&p) = col.preds.get(i) {
                let ok = p == fig.labels[i];
                let s = fit(
                    &format!("pred: {} {}", class(p), if ok { "✓" } else { "✗" }),
                    cw as f32 + GAP as f32,
                );
                let colour = if ok { [20, 130, 40] } else { [200, 30, 30] };
                c.text(
                    (x0 + cw / 2) as f32,
                    cap_y,
                    FONT - 1.0,
                    &s,
                    colour,
                    Align::Center,
                );
            }
        }
        if fig.scale == Scale::Row {
            let bx = GAP + cols * (cw + GAP);
            for dy in 0..ch {
                let t = 1.0 - dy as f32 / (ch - 1).max(1) as f32;
                let col = fig.palette.at(t).map(|v| (v * 255.0).round() as u8);
                c.rect(bx, y0 + dy, BAR as u32, 1, col);
            }
            c.text(
                (bx + BAR + 4) as f32,
                (y0 + 10) as f32,
                FONT - 2.0,
                &short(row_max),
                dim,
                Align::Left,
            );
            c.text(
                (bx + BAR + 4) as f32,
                (y0 + ch) as f32,
                FONT - 2.0,
                &short(fig.palette.low(row_max)),
                dim,
                Align::Left,
            );
        }
    }
    c
}

/// A number in at most about 8 characters (`0.0123`, `1.2e-5`, `345.6`).
fn short(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&v.abs()) {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// `s` cut with '…' to fit `width` px at the caption size.
fn fit(s: &str, width: f32) -> String {
    if text_width(s, FONT) <= width {
        return s.to_string();
    }
    let mut t: String = s.to_string();
    while !t.is_empty() && text_width(&format!("{t}…"), FONT) > width {
        t.pop();
    }
    format!("{t}…")
}
