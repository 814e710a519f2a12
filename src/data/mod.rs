//! Datasets: one in-memory [`ImageSet`] (float32 NCHW in [0,1] plus labels) and
//! the readers that fill it from the formats researchers have: MNIST idx
//! (plain or gzip), CIFAR-10/100 binary, image folders, `.npz`, and the
//! embedded Fashion-MNIST test set (`builtin:fashion-mnist`). The `:colour`
//! suffix applies the colour-shift split of SPEC.md.

pub mod cache;
pub mod cifar;
pub mod colour;
pub mod folder;
pub mod idx;
pub mod imagenet;
pub mod jpeg;
pub mod npyz;
pub mod npz;
pub mod preprocess;
pub mod presets;
pub mod resample;

pub mod files;
pub mod input;
pub mod pixels;
pub mod set;
pub mod stream;

pub use files::is_pickle;
pub use set::{
    Family, ImageSet, LoadOptions, Norm, Pixels, Split, CIFAR10_CLASSES, FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Shipped Fashion-MNIST test set (Debian `dataset-fashion-mnist`, MIT licence).
pub static BUILTIN_FMNIST_IMAGES: &[u8] =
    include_bytes!("../../assets/fashion-mnist/t10k-images-idx3-ubyte.gz");
pub static BUILTIN_FMNIST_LABELS: &[u8] =
    include_bytes!("../../assets/fashion-mnist/t10k-labels-idx1-ubyte.gz");

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
