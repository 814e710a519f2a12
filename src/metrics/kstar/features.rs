//! Feature files for `semcon kstar`: `.npz` from `semcon features` (with
//! labels, layer and class names) or `.npy` with separate labels.

use super::compute::kstar;
use super::types::{Element, Metric};
use crate::error::{Error, Result};
use candle_core::{DType, Device};
use std::path::Path;

/// Feature values as read from a file.
#[derive(Clone, Debug)]
pub enum FeatureValues {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Features (`n x dim`, row-major) and labels read for `semcon kstar`.
#[derive(Clone, Debug)]
pub struct FeatureFile {
    pub values: FeatureValues,
    pub dim: usize,
    pub labels: Vec<u32>,
    /// The layer the features come from (`layer` in an .npz `semcon
    /// features` wrote).
    pub layer: Option<String>,
    /// Class names (`class_names` in such an .npz).
    pub class_names: Option<Vec<String>>,
    /// The model's prediction of each sample (`preds` in such an .npz), for
    /// the accuracies of the k* report.
    pub preds: Option<Vec<u32>>,
}

impl FeatureFile {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn kstar(&self, metric: Metric, device: &Device) -> Result<Vec<u32>> {
        fn go<T: Element>(x: &[T], f: &FeatureFile, m: Metric, d: &Device) -> Result<Vec<u32>> {
            kstar(x, f.dim, &f.labels, m, d)
        }
        match &self.values {
            FeatureValues::F32(v) => go(v, self, metric, device),
            FeatureValues::F64(v) => go(v, self, metric, device),
        }
    }
}

/// The layers an `.npz` from `semcon features` holds (its `layer` array:
/// one name, or every tap with `--layer all`); empty for other files.
pub fn layers_in(path: &Path) -> Result<Vec<String>> {
    if !path.is_file()
        || !path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
    {
        return Ok(Vec::new()); // the reader says what is wrong
    }
    let npz = crate::data::npyz::Npz::open(path)?;
    Ok(npz.get_strings("layer")?.unwrap_or_default())
}

/// [`read_features`] at one of the layers of a file `semcon features
/// --layer all` wrote (its array `features_LAYER`).
pub fn read_features_at(path: &Path, labels: Option<&Path>, layer: &str) -> Result<FeatureFile> {
    read(path, labels, Some(layer))
}

/// Reads features from `.npz` (arrays `features` and `labels`, as `semcon
/// features` writes them) or `.npy` (then `labels` is required; with an
/// `.npz` it replaces the file's labels). Features must be float32 or
/// float64 with at least two dimensions; dimensions after the first are
/// flattened.
pub fn read_features(path: &Path, labels: Option<&Path>) -> Result<FeatureFile> {
    read(path, labels, None)
}

fn read(path: &Path, labels: Option<&Path>, at: Option<&str>) -> Result<FeatureFile> {
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let (mut layer, mut class_names, mut preds) = (None, None, None);
    let (x, y) = if is_npz {
        if !path.is_file() {
            return Err(Error::format(path, "no such file"));
        }
        // semcon's reader: also np.savez_compressed files.
        let npz = crate::data::npyz::Npz::open(path)?;
        let names = || npz.names().join(", ");
        layer = npz.get_strings("layer")?.and_then(|v| v.into_iter().next());
        class_names = npz.get_strings("class_names")?;
        if let Some(p) = npz.get("preds")? {
            preds = Some(crate::data::npz::labels_from(&p, path)?);
        }
        let key = at.map_or_else(|| "features".to_string(), |l| format!("features_{l}"));
        let x = npz.get(&key)?.ok_or_else(|| {
            Error::format(
                path,
                format!("npz has no array '{key}' (it has: {})", names()),
            )
        })?;
        if let Some(l) = at {
            layer = Some(l.to_string());
        }
        let y = match labels {
            Some(l) => crate::data::npyz::read_npy_file(l)?,
            None => npz.get("labels")?.ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "npz has no array 'labels' (it has: {}); pass --labels",
                        names()
                    ),
                )
            })?,
        };
        (x, y)
    } else {
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if !is_npy {
            return Err(Error::format(
                path,
                "features must be an .npz (as `semcon features` writes) or an .npy with --labels",
            ));
        }
        let Some(l) = labels else {
            return Err(crate::invalid!(
                "--labels is required with a .npy features file ({})",
                path.display()
            ));
        };
        (
            crate::data::npyz::read_npy_file(path)?,
            crate::data::npyz::read_npy_file(l)?,
        )
    };
    let label_path = labels.unwrap_or(path);
    let labels = crate::data::npz::labels_from(&y, label_path)?;
    if x.rank() < 2 {
        return Err(Error::format(
            path,
            format!(
                "features must be a samples x dimensions array, found shape {:?}",
                x.dims()
            ),
        ));
    }
    let n = x.dim(0)?;
    let dim: usize = x.dims()[1..].iter().product();
    let x = x.flatten_all()?;
    let values = match x.dtype() {
        DType::F32 => FeatureValues::F32(x.to_vec1()?),
        DType::F64 => FeatureValues::F64(x.to_vec1()?),
        d => {
            return Err(Error::format(
                path,
                format!("features must be float32 or float64, found {d:?}"),
            ))
        }
    };
    if n != labels.len() {
        return Err(crate::invalid!(
            "{} has {n} feature rows but there are {} labels",
            path.display(),
            labels.len()
        ));
    }
    if preds.as_ref().is_some_and(|p| p.len() != n) {
        return Err(Error::format(
            path,
            format!("'preds' does not have one prediction per feature row ({n})"),
        ));
    }
    Ok(FeatureFile {
        values,
        dim,
        labels,
        layer,
        class_names,
        preds,
    })
}
