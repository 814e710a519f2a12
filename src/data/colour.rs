//! Colour-shift split (SPEC.md, paper §4.7): a grayscale MNIST-like set gets
//! its background (pixels below [`THRESHOLD`]) tinted red or blue. Train split:
//! 95% red / 5% blue; test split: 95% blue / 5% red; the assignment is seeded
//! per split, so it is the same on every run. The foreground keeps its gray.

use super::set::{ImageSet, Split};
use crate::error::Result;
use rand::{Rng, SeedableRng};

/// Pixels below this value (in [0,1]) count as background.
pub const THRESHOLD: f32 = 0.1;
pub const RED: [f32; 3] = [1.0, 0.0, 0.0];
pub const BLUE: [f32; 3] = [0.0, 0.0, 1.0];
/// Fraction of samples with the split's majority colour.
pub const MAJORITY: f64 = 0.95;

/// Background colour per sample: `true` = red.
pub fn assignment(n: usize, split: Split) -> Vec<bool> {
    let (seed, red_majority) = match split {
        Split::Train => (0xC010_0001u64, true),
        Split::Test => (0xC010_0002u64, false),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.gen_bool(MAJORITY) == red_majority)
        .collect()
}

pub fn colour_shift(set: &ImageSet, split: Split) -> Result<ImageSet> {
    if set.channels != 1 {
        return Err(crate::invalid!(
            "the :colour split needs a grayscale (MNIST-like) dataset; {} has {} channels",
            set.name,
            set.channels
        ));
    }
    let hw = set.height * set.width;
    let red = assignment(set.len(), split);
    let mut data = Vec::with_capacity(set.len() * 3 * hw);
    for (i, &is_red) in red.iter().enumerate() {
        let g = set.image(i);
        let tint = if is_red { RED } else { BLUE };
        for t in tint {
            data.extend(g.iter().map(|&v| if v < THRESHOLD { t } else { v }));
        }
    }
    Ok(ImageSet {
        name: format!("{}:colour", set.name),
        channels: 3,
        height: set.height,
        width: set.width,
        data: data.into(),
        labels: set.labels.clone(),
        class_names: set.class_names.clone(),
        norm: None,
    })
}

/// Whether `set` is a colour-shift set (its background pixels known).
pub fn is_colour_shift(set: &ImageSet) -> bool {
    set.channels == 3 && set.name.ends_with(":colour")
}

/// The background pixels of one colour-shift image (CHW, `hw` pixels per
/// channel): those of exactly [`RED`] or [`BLUE`] (a foreground pixel keeps
/// its gray, equal in every channel, so it is never either).
pub fn background(image: &[f32], hw: usize) -> Vec<bool> {
    (0..hw)
        .map(|p| {
            let px = [image[p], image[hw + p], image[2 * hw + p]];
            px == RED || px == BLUE
        })
        .collect()
}
