//! `semcon perturb`: perturbed images as .npy, or a before/after grid as .png.

use super::args::DataArgs;
use super::common::check_out;
use crate::data::input::read_input_set;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PerturbArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Float32 NCHW images in [0,1] (.npy) instead of a dataset.
    #[arg(long, conflicts_with = "dataset")]
    pub input: Option<PathBuf>,
    /// brightness, contrast, saturation, hue, channel-shift, center-shuffle, puzzle, noise, rotate, crop-resize.
    #[arg(long)]
    pub perturb: String,
    /// Level 0..4 (0 = identity).
    #[arg(long)]
    pub level: usize,
    /// Output: .npy (perturbed images, float32 NCHW) or .png (originals on top, perturbed below, up to 16).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &PerturbArgs) -> Result<()> {
    let kind: crate::perturb::Kind = a.perturb.parse()?;
    check_out(&a.out, &["npy", "png"])?;
    let png = a
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let set = match &a.input {
        Some(p) => a.data.choice()?.subset(read_input_set(p)?)?,
        None => a.data.choice()?.load(None)?,
    };
    // A PNG shows the first 16 images: only those are read and perturbed.
    let n = if png { set.len().min(16) } else { set.len() };
    let shape = (n, set.channels, set.height, set.width);
    let x = set.try_images(0, n)?;
    let y = crate::perturb::apply(kind, a.level, &x, shape, a.data.seed)?;
    let label = kind.param_label(a.level, set.height.min(set.width));
    if png {
        let cols = set.len().min(16);
        let (c, h, w) = (set.channels, set.height, set.width);
        let scale = (96 / h.max(w)).max(1);
        let (cw, chh, gap) = (w * scale, h * scale, 2);
        let (gw, gh) = (cols * (cw + gap) + gap, 2 * (chh + gap) + gap);
        let mut img =
            image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
        for (row, data) in [&x[..], &y[..]].into_iter().enumerate() {
            for i in 0..cols {
                let im = &data[i * c * h * w..(i + 1) * c * h * w];
                for py in 0..chh {
                    for px in 0..cw {
                        let (sy, sx) = (py / scale, px / scale);
                        let v = |ch: usize| {
                            (im[ch.min(c - 1) * h * w + sy * w + sx].clamp(0.0, 1.0) * 255.0)
                                .round() as u8
                        };
                        let (ox, oy) = (gap + i * (cw + gap) + px, gap + row * (chh + gap) + py);
                        img.put_pixel(ox as u32, oy as u32, image::Rgb([v(0), v(1), v(2)]));
                    }
                }
            }
        }
        img.save_with_format(&a.out, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", a.out.display()))?;
    } else {
        let t = Tensor::from_vec(y, shape, &Device::Cpu)?;
        t.write_npy(&a.out)
            .with_context(|| format!("cannot write {}", a.out.display()))?;
    }
    eprintln!("wrote {} ({} images, {label})", a.out.display(), set.len());
    Ok(())
}
