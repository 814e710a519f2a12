//! torchvision's evaluation preprocessing of a PIL image
//! (`ImageClassification`: resize the shorter side, center crop) on top of
//! PIL's resize in [`super::resample`]: the sizes and offsets, the source
//! window a decoder needs to decode, and the crop computed from it.

use super::resample::{
    center_crop_offsets, resize_crop, shorter_side_size, source_window, Filter, Order, Window,
    MAX_PIXELS,
};

/// A (width, height) or a (left, top).
type Size = (usize, usize);

/// torchvision's evaluation preprocessing of a PIL image
/// (`ImageClassification`): resize the shorter side to `resize` with
/// `filter` (antialiased, PIL's), center crop `crop`x`crop`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Preprocess {
    pub resize: usize,
    pub crop: usize,
    pub filter: Filter,
}

impl Preprocess {
    /// Checks the sizes: both at least 1, the crop no larger than the resize.
    pub fn new(resize: usize, crop: usize, filter: Filter) -> Result<Self, String> {
        if resize == 0 || crop == 0 {
            return Err(format!(
                "--resize {resize} --crop {crop}: both must be at least 1"
            ));
        }
        if crop > resize {
            return Err(format!(
                "--crop {crop} is larger than --resize {resize}: the center crop must fit in the resized image (torchvision would pad it with black)"
            ));
        }
        Ok(Preprocess {
            resize,
            crop,
            filter,
        })
    }

    /// Interleaved RGB `w`x`h` -> interleaved RGB `crop`x`crop`; an empty
    /// image, or one whose resized size would pass PIL's decompression-bomb
    /// limit (a 1-pixel-high strip made thousands of times wider), is an error.
    pub fn apply(&self, rgb: &[u8], w: usize, h: usize) -> Result<Vec<u8>, String> {
        self.apply_window(rgb, (w, h), Window::whole(w, h))
    }

    /// The resized size and the crop's offsets for a `w`x`h` image.
    fn plan(&self, w: usize, h: usize) -> Result<(Size, Size), String> {
        if w == 0 || h == 0 {
            return Err(format!("the image is {w}x{h} pixels"));
        }
        let (rw, rh) = shorter_side_size(w, h, self.resize);
        if (rw as u64).saturating_mul(rh as u64) > MAX_PIXELS {
            return Err(format!(
                "resizing its {w}x{h} pixels to a shorter side of {} gives {rw}x{rh}, more than the {MAX_PIXELS} pixels an image may have",
                self.resize
            ));
        }
        // The shorter side is `resize` >= `crop`, the longer no shorter.
        debug_assert!(rw >= self.crop && rh >= self.crop);
        Ok(((rw, rh), center_crop_offsets(rw, rh, self.crop, self.crop)))
    }

    /// The region of a `w`x`h` image that the result depends on (what a
    /// decoder needs to decode).
    pub fn source_window(&self, w: usize, h: usize) -> Result<Window, String> {
        let (size, off) = self.plan(w, h)?;
        Ok(source_window(
            (w, h),
            size,
            self.filter,
            off,
            (self.crop, self.crop),
        ))
    }

    /// [`Preprocess::apply`] given only the region `win` of the image, which
    /// must contain [`Preprocess::source_window`]'s.
    pub fn apply_window(
        &self,
        rgb: &[u8],
        (w, h): (usize, usize),
        win: Window,
    ) -> Result<Vec<u8>, String> {
        let (size, off) = self.plan(w, h)?;
        if !win.contains(&source_window(
            (w, h),
            size,
            self.filter,
            off,
            (self.crop, self.crop),
        )) || rgb.len() != win.w * win.h * 3
        {
            return Err(format!(
                "{win:?} does not hold what the preprocessing of a {w}x{h} image reads"
            ));
        }
        // Only the crop is computed: the same values as resizing everything.
        Ok(resize_crop(
            rgb,
            (w, h, 3),
            win,
            size,
            self.filter,
            Order::default(),
            off,
            (self.crop, self.crop),
        ))
    }
}
