//! Datasets: one in-memory [`ImageSet`] (float32 NCHW in [0,1] plus labels) and
//! the readers that fill it from the formats researchers have: MNIST idx
//! (plain or gzip), CIFAR-10/100 binary, image folders, `.npz`, and the
//! embedded Fashion-MNIST test set (`builtin:fashion-mnist`). The `:colour`
//! suffix applies the colour-shift split of SPEC.md.

pub mod cifar;
pub mod colour;
pub mod folder;
pub mod idx;
pub mod npyz;
pub mod npz;

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

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

/// Shipped Fashion-MNIST test set (Debian `dataset-fashion-mnist`, MIT licence).
pub static BUILTIN_FMNIST_IMAGES: &[u8] =
    include_bytes!("../../assets/fashion-mnist/t10k-images-idx3-ubyte.gz");
pub static BUILTIN_FMNIST_LABELS: &[u8] =
    include_bytes!("../../assets/fashion-mnist/t10k-labels-idx1-ubyte.gz");

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

/// A labelled set of images, float32 NCHW in [0,1], kept on the CPU.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// Human-readable name (the spec it came from).
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `n * channels * height * width` values in [0,1].
    pub data: Vec<f32>,
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
    pub fn image(&self, i: usize) -> &[f32] {
        let l = self.image_len();
        &self.data[i * l..(i + 1) * l]
    }

    /// Images `start..end` as a `[b, c, h, w]` tensor on `device`.
    pub fn batch(&self, start: usize, end: usize, device: &Device) -> Result<Tensor> {
        let l = self.image_len();
        let t = Tensor::from_slice(
            &self.data[start * l..end * l],
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
        for img in self.data.chunks_exact(hw * self.channels) {
            for _ in 0..c {
                data.extend_from_slice(&img[..hw]);
            }
        }
        ImageSet {
            data,
            labels: self.labels.clone(),
            channels: c,
            ..self.clone_meta()
        }
    }

    /// Keep the images at `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> ImageSet {
        let l = self.image_len();
        let mut data = Vec::with_capacity(idx.len() * l);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            data.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
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
            data: Vec::new(),
            labels: Vec::new(),
            class_names: self.class_names.clone(),
            norm: self.norm.clone(),
        }
    }

    /// A seeded random subset of `n` samples (kept in dataset order); the
    /// whole set when `n >= len`.
    pub fn subset(&self, n: usize, seed: u64) -> ImageSet {
        if n >= self.len() {
            return self.clone();
        }
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut idx = rand::seq::index::sample(&mut rng, self.len(), n).into_vec();
        idx.sort_unstable();
        self.select(&idx)
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

/// How a dataset is named on the command line, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSpec {
    pub source: Source,
    /// Colour-shift suffix (SPEC.md): `:colour` follows the split (train: 95%
    /// red backgrounds, test: 95% blue); `:colour-red` / `:colour-blue` force
    /// one assignment (e.g. the training distribution on test images).
    pub colour: Option<Colour>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    /// The split's own assignment.
    Split,
    /// 95% red backgrounds (the training distribution).
    Red,
    /// 95% blue backgrounds (the shifted test distribution).
    Blue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    BuiltinFashionMnist,
    Path(PathBuf),
}

impl std::str::FromStr for DatasetSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut colour = None;
        let mut base = s;
        for (suffix, c) in [
            (":colour", Colour::Split),
            (":color", Colour::Split),
            (":colour-red", Colour::Red),
            (":colour-blue", Colour::Blue),
        ] {
            if let Some(b) = s.strip_suffix(suffix) {
                base = b;
                colour = Some(c);
            }
        }
        let source = match base {
            "builtin:fashion-mnist" | "builtin" => Source::BuiltinFashionMnist,
            b if b.starts_with("builtin:") => {
                return Err(crate::invalid!(
                    "unknown builtin dataset '{b}' (available: builtin:fashion-mnist, also with :colour, :colour-red or :colour-blue)"
                ))
            }
            b => Source::Path(PathBuf::from(b)),
        };
        Ok(DatasetSpec { source, colour })
    }
}

impl std::fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::BuiltinFashionMnist => write!(f, "builtin:fashion-mnist")?,
            Source::Path(p) => write!(f, "{}", p.display())?,
        }
        match self.colour {
            None => {}
            Some(Colour::Split) => write!(f, ":colour")?,
            Some(Colour::Red) => write!(f, ":colour-red")?,
            Some(Colour::Blue) => write!(f, ":colour-blue")?,
        }
        Ok(())
    }
}

/// Options that apply to every reader.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub split: Split,
    /// Image-folder images are resized to this (height, width).
    pub resize: Option<(usize, usize)>,
    /// Skip (with a warning) files in an image folder that are not images.
    pub skip_bad_images: bool,
}

/// Reads a dataset. The format is detected from the path.
pub fn load(spec: &DatasetSpec, opts: &LoadOptions) -> Result<ImageSet> {
    if let Some((h, w)) = opts.resize {
        if h == 0 || w == 0 {
            return Err(crate::invalid!(
                "cannot resize images to {h}x{w}: both sides must be at least 1"
            ));
        }
    }
    let mut set = match &spec.source {
        Source::BuiltinFashionMnist => {
            if opts.split == Split::Train {
                return Err(crate::invalid!(
                    "builtin:fashion-mnist ships only the test split; for training use the Debian \
                     package dataset-fashion-mnist: --dataset /usr/share/datasets/fashion-mnist --split train"
                ));
            }
            let images = idx::parse_images(
                Path::new("builtin:fashion-mnist/t10k-images-idx3-ubyte.gz"),
                &idx::maybe_gunzip(Path::new("builtin"), BUILTIN_FMNIST_IMAGES)?,
            )?;
            let labels = idx::parse_labels(
                Path::new("builtin:fashion-mnist/t10k-labels-idx1-ubyte.gz"),
                &idx::maybe_gunzip(Path::new("builtin"), BUILTIN_FMNIST_LABELS)?,
            )?;
            idx::assemble(
                "builtin:fashion-mnist".into(),
                images,
                labels,
                Family::FashionMnist,
            )?
        }
        Source::Path(p) => load_path(p, opts)?,
    };
    if let Some(c) = spec.colour {
        let assignment = match c {
            Colour::Split => opts.split,
            Colour::Red => Split::Train,
            Colour::Blue => Split::Test,
        };
        set = colour::colour_shift(&set, assignment)?;
    }
    set.name = spec.to_string();
    Ok(set)
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

fn load_path(p: &Path, opts: &LoadOptions) -> Result<ImageSet> {
    let meta = std::fs::metadata(p).map_err(|e| {
        Error::io(
            p,
            std::io::Error::new(e.kind(), format!("cannot open dataset: {e}")),
        )
    })?;
    let name = p.file_name().and_then(|s| s.to_str()).unwrap_or("");
    if meta.is_file() {
        if name.ends_with(".npz") {
            return npz::load(p, opts.split);
        }
        if name.ends_with(".bin") {
            return cifar::load_file(p);
        }
        if is_cifar_python(p) {
            return Err(Error::format(p, CIFAR_PYTHON));
        }
        if name.contains("idx3") || name.contains("-images") {
            return idx::load_files(p);
        }
        if name.contains("idx1") || name.contains("-labels") {
            return Err(Error::format(
                p,
                "this is an idx labels file: give the images file (...-images-idx3-ubyte) or the directory",
            ));
        }
        return Err(Error::format(
            p,
            "unknown dataset format (expected .npz, a CIFAR .bin, an idx images file, or a directory)",
        ));
    }
    // A directory: MNIST-like idx, CIFAR binary, or an image folder; also
    // the roots torchvision's download=True leaves (ROOT/FashionMNIST/raw,
    // ROOT/cifar-10-batches-bin).
    for sub in ["", "raw", "FashionMNIST/raw", "MNIST/raw", "KMNIST/raw"] {
        if let Some(found) = idx::find_in_dir(&p.join(sub), opts.split) {
            return idx::load_files(&found);
        }
    }
    for sub in ["", "cifar-10-batches-bin", "cifar-100-binary"] {
        if let Some(set) = cifar::load_dir(&p.join(sub), opts.split)? {
            return Ok(set);
        }
    }
    if let Some(pickled) = ["cifar-10-batches-py", "cifar-100-python"]
        .iter()
        .map(|d| p.join(d))
        .find(|d| d.is_dir())
        .or_else(|| is_cifar_python(&p.join("test_batch")).then(|| p.to_path_buf()))
        .or_else(|| is_cifar_python(&p.join("test")).then(|| p.to_path_buf()))
    {
        return Err(Error::format(&pickled, CIFAR_PYTHON));
    }
    folder::load(p, opts)
}

/// What to do with torchvision's CIFAR download (the python version).
const CIFAR_PYTHON: &str = "this is the python (pickle) version of CIFAR that torchvision downloads; \
semcon reads the binary version (cifar-10-binary.tar.gz: data_batch_N.bin, test_batch.bin; \
cifar-100-binary.tar.gz: train.bin, test.bin) or an .npz: \
np.savez('c.npz', x=ds.data, y=np.array(ds.targets)) with ds = torchvision.datasets.CIFAR10(root, train=False)";

/// A file of CIFAR's python version (a pickle).
fn is_cifar_python(p: &Path) -> bool {
    let name = p.file_name().and_then(|s| s.to_str()).unwrap_or("");
    let known = name.starts_with("data_batch_") && !name.ends_with(".bin")
        || matches!(name, "test_batch" | "test" | "train");
    known && is_pickle(p)
}

/// Whether `p` is a file holding a bare pickle stream (protocol 2 and later
/// start with the PROTO opcode 0x80): CIFAR's python version, or torch.save's
/// legacy format.
pub(crate) fn is_pickle(p: &Path) -> bool {
    let mut b = [0u8; 1];
    p.is_file()
        && std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .is_ok()
        && b[0] == 0x80
}

pub(crate) fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::io(p, e))
}

/// The product of `dims`, `None` when it overflows (sizes from a file header
/// can announce more than a usize holds).
pub(crate) fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}
