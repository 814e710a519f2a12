//! The dataset every reader fills ([`ImageSet`]: NCHW pixels in [0,1],
//! float32 or uint8 ([`Pixels`]), plus labels), the names of the splits and of the dataset families
//! semcon knows (class names, normalisation), and the options every reader
//! takes.

use super::files::checked_product;
use super::pixels::Bytes;
pub use super::pixels::Pixels;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

/// The Fashion-MNIST class names (Zalando, MIT licence).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Which part of a dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    #[default]
    Test,
}

/// Known normalisation of a dataset family (mean, std per channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Norm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A labelled set of images, NCHW in [0,1], kept on the CPU (or mapped from
/// the decoded-image cache); read batch by batch as float32.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// Human-readable name (the spec it came from).
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `n * channels * height * width` values in [0,1].
    pub data: Pixels,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
    /// Normalisation usually used with this data, when the family is known.
    pub norm: Option<Norm>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Pixels of image `i` (CHW).
    pub fn image(&self, i: usize) -> Cow<'_, [f32]> {
        self.images(i, i + 1)
    }
    /// Pixels of images `start..end` (NCHW), as float32.
    pub fn images(&self, start: usize, end: usize) -> Cow<'_, [f32]> {
        let l = self.image_len();
        self.data.range(start * l, end * l)
    }

    /// [`ImageSet::images`], or the error that stopped the decoding of a
    /// folder read in the background before them.
    pub fn try_images(&self, start: usize, end: usize) -> Result<Cow<'_, [f32]>> {
        let l = self.image_len();
        self.data
            .try_range(start * l, end * l)
            .map_err(Error::Invalid)
    }

    /// Images `start..end` as a `[b, c, h, w]` tensor on `device`.
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> Result<Tensor> {
        let t = Tensor::from_slice(
            &self.try_images(start, end)?,
            (end - start, self.channels, self.height, self.width),
            device,
        )?;
        Ok(t)
    }
    /// Labels `start..end` as a u32 tensor.
    pub fn batch_labels(&self, start: usize, end: usize, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.labels[start..end],
            end - start,
            device,
        )?)
    }

    /// The same images with their single channel copied `c` times (gray -> RGB).
    pub fn replicate_channels(&self, c: usize) -> ImageSet {
        let hw = self.height * self.width;
        let mut data = Vec::with_capacity(self.data.len() * c);
        for img in self.data.to_f32().chunks_exact(hw * self.channels) {
            for _ in 0..c {
                data.extend_from_slice(&img[..hw]);
            }
        }
        ImageSet {
            data: data.into(),
            labels: self.labels.clone(),
            channels: c,
            ..self.clone_meta()
        }
    }

    /// RGB images to one gray channel by ITU-R 601-2 luma
    /// (0.299 R + 0.587 G + 0.114 B, the weights of PIL's `convert("L")`,
    /// without its rounding to 8 bits).
    pub fn to_grayscale(&self) -> ImageSet {
        let hw = self.height * self.width;
        let mut data = Vec::with_capacity(self.len() * hw);
        for img in self.data.to_f32().chunks_exact(hw * self.channels) {
            let (r, rest) = img.split_at(hw);
            let (g, b) = rest.split_at(hw);
            data.extend(
                r.iter()
                    .zip(g)
                    .zip(b)
                    .map(|((r, g), b)| 0.299 * r + 0.587 * g + 0.114 * b),
            );
        }
        ImageSet {
            data: data.into(),
            labels: self.labels.clone(),
            channels: 1,
            ..self.clone_meta()
        }
    }

    /// Every image resized to `h`x`w`, channel by channel, by the `image`
    /// crate's triangle filter (bilinear, antialiased when shrinking).
    pub fn resized(&self, h: usize, w: usize) -> ImageSet {
        use image::{imageops, ImageBuffer, Luma};
        let hw = self.height * self.width;
        let mut data = Vec::with_capacity(self.len() * self.channels * h * w);
        for plane in self.data.to_f32().chunks_exact(hw) {
            let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
                ImageBuffer::from_raw(self.width as u32, self.height as u32, plane.to_vec())
                    .expect("plane has width x height values");
            let out = imageops::resize(&buf, w as u32, h as u32, imageops::FilterType::Triangle);
            data.extend(out.into_raw());
        }
        ImageSet {
            data: data.into(),
            labels: self.labels.clone(),
            height: h,
            width: w,
            ..self.clone_meta()
        }
    }

    /// Keep the images at `idx` (in that order), stored as they were.
    pub fn select(&self, idx: &[usize]) -> ImageSet {
        let l = self.image_len();
        let labels = idx.iter().map(|&i| self.labels[i]).collect();
        let data = match &self.data {
            Pixels::F32(v) => Pixels::F32(
                idx.iter()
                    .flat_map(|&i| &v[i * l..(i + 1) * l])
                    .copied()
                    .collect(),
            ),
            Pixels::U8(b) => Pixels::U8(Arc::new(Bytes::Owned(
                idx.iter()
                    .flat_map(|&i| {
                        // A growing store waits for these images only.
                        b.range(i * l, (i + 1) * l)
                            .map_or_else(|_| vec![0; l], <[u8]>::to_vec)
                    })
                    .collect(),
            ))),
        };
        ImageSet {
            data,
            labels,
            ..self.clone_meta()
        }
    }

    fn clone_meta(&self) -> ImageSet {
        ImageSet {
            name: self.name.clone(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: Pixels::default(),
            labels: Vec::new(),
            class_names: self.class_names.clone(),
            norm: self.norm.clone(),
        }
    }

    /// A seeded, stratified sample: at most `n` images of each class (kept
    /// in dataset order).
    pub fn per_class(&self, n: usize, seed: u64) -> ImageSet {
        let keep = per_class_indices(&self.labels, n, seed);
        if keep.len() == self.len() {
            return self.clone(); // all of them (an image folder sampled already)
        }
        self.select(&keep)
    }

    /// A seeded random subset of `n` samples (kept in dataset order); the
    /// whole set when `n >= len`.
    pub fn subset(&self, n: usize, seed: u64) -> ImageSet {
        if n >= self.len() {
            return self.clone();
        }
        self.select(&subset_indices(self.len(), n, seed))
    }

    /// Checks that every label fits `num_classes` (a model's output size).
    pub fn check_labels(&self, num_classes: usize) -> Result<()> {
        if let Some((i, &y)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= num_classes)
        {
            return Err(crate::invalid!(
                "dataset {}: label {y} of sample {i} does not fit a model with {num_classes} classes (labels must be 0..{})",
                self.name,
                num_classes - 1
            ));
        }
        Ok(())
    }

    /// Validates the internal sizes (used by the readers): images of at least
    /// 1x1 pixels and one channel, and as many pixel values as the labels say.
    pub(crate) fn validated(self) -> Result<ImageSet> {
        if self.height == 0 || self.width == 0 {
            return Err(Error::format(
                &self.name,
                format!("images are {}x{} pixels", self.height, self.width),
            ));
        }
        if self.channels == 0 {
            return Err(Error::format(&self.name, "images have 0 channels"));
        }
        let want = checked_product(&[self.channels, self.height, self.width, self.labels.len()]);
        if want != Some(self.data.len()) {
            return Err(crate::invalid!(
                "dataset {}: {} labels but {} pixel values for {}x{}x{} images",
                self.name,
                self.labels.len(),
                self.data.len(),
                self.channels,
                self.height,
                self.width
            ));
        }
        if let Some((i, &y)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= self.class_names.len())
        {
            return Err(crate::invalid!(
                "dataset {}: label {y} of sample {i} is not one of its {} classes",
                self.name,
                self.class_names.len()
            ));
        }
        Ok(self)
    }
}

/// The indices of a seeded, stratified sample of `labels`: at most `n` of
/// each label (labels in increasing order each shuffle their indices with
/// one generator), in their original order. Image folders sample their file
/// list with it before decoding, other sets their images after loading.
pub fn per_class_indices(labels: &[u32], n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut by_label: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_label.entry(l).or_default().push(i);
    }
    let mut keep = Vec::new();
    for idx in by_label.values_mut() {
        idx.shuffle(&mut rng);
        keep.extend(idx.iter().take(n));
    }
    keep.sort_unstable();
    keep
}

/// The indices of a seeded random subset of `n` of `len` items, in order
/// (`n < len`). Image folders sample their file list with it before
/// decoding, other sets their images after loading.
pub fn subset_indices(len: usize, n: usize, seed: u64) -> Vec<usize> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut idx = rand::seq::index::sample(&mut rng, len, n).into_vec();
    idx.sort_unstable();
    idx
}

/// Options that apply to every reader.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub split: Split,
    /// Image-folder images are resized to this (height, width).
    pub resize: Option<(usize, usize)>,
    /// Skip (with a warning) files in an image folder that are not images.
    pub skip_bad_images: bool,
    /// torchvision's eval preprocessing for image folders (resize the
    /// shorter side, center crop) instead of `resize`.
    pub preprocess: Option<super::preprocess::Preprocess>,
    /// Keep a seeded sample of at most this many images per class.
    pub per_class: Option<usize>,
    /// Then a seeded random subset of this many images (image folders take
    /// it from their file list, before decoding; [`ImageSet::subset`] takes
    /// the same one from a loaded set).
    pub samples: Option<usize>,
    /// Seed of the per-class sample.
    pub seed: u64,
    /// The fewest outputs of the models the set is for: an image folder
    /// refuses a label beyond them before decoding anything.
    pub num_classes: Option<usize>,
    /// Keep image folders' decoded images in the cache directory and read
    /// them from there next time (`cache.rs`).
    pub cache: bool,
    /// An image folder not in the cache returns at once and is decoded by a
    /// background thread while it is read (the explorer; not with
    /// `skip_bad_images`, which changes the count as it goes).
    pub stream: bool,
}

/// Dataset families with known class names and normalisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Family {
    Mnist,
    FashionMnist,
    Cifar10,
    Cifar100,
    Unknown,
}

impl Family {
    pub fn norm(self) -> Option<Norm> {
        let n = |m: &[f32], s: &[f32]| {
            Some(Norm {
                mean: m.to_vec(),
                std: s.to_vec(),
            })
        };
        match self {
            Family::Mnist => n(&[0.1307], &[0.3081]),
            Family::FashionMnist => n(&[0.2860], &[0.3530]),
            Family::Cifar10 => n(&[0.4914, 0.4822, 0.4465], &[0.2470, 0.2435, 0.2616]),
            Family::Cifar100 => n(&[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762]),
            Family::Unknown => None,
        }
    }
}
