//! `.npz` datasets: `x` as uint8 NHWC (or NHW) in 0..255, or float32/float64
//! NCHW in [0,1]; `y` integer labels.

use super::{Family, ImageSet};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use std::path::Path;

fn get(npz: &candle_core::npy::NpzTensors, p: &Path, key: &str) -> Result<Tensor> {
    match npz.get(key) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => {
            let names: Vec<String> = npz.names().into_iter().cloned().collect();
            Err(Error::format(
                p,
                format!(
                    "npz has no array '{key}' (it has: {}); expected 'x' (images) and 'y' (labels)",
                    names.join(", ")
                ),
            ))
        }
        Err(e) => Err(Error::format(p, format!("cannot read array '{key}': {e}"))),
    }
}

/// Labels from any integer array, checked for negatives.
pub fn labels_from(t: &Tensor, p: &Path) -> Result<Vec<u32>> {
    let t = t.flatten_all()?;
    let v: Vec<i64> = match t.dtype() {
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64 => {
            t.to_dtype(DType::I64)?.to_vec1()?
        }
        d => {
            return Err(Error::format(
                p,
                format!("labels must be integers, found {d:?}"),
            ))
        }
    };
    if let Some((i, y)) = v.iter().enumerate().find(|(_, &y)| y < 0) {
        return Err(Error::format(
            p,
            format!("negative label {y} at sample {i}"),
        ));
    }
    Ok(v.into_iter().map(|y| y as u32).collect())
}

/// Images from an array: uint8 NHWC/NHW (0..255) or float NCHW in [0,1].
/// Returns (c, h, w, data).
pub fn images_from(x: &Tensor, p: &Path) -> Result<(usize, usize, usize, Vec<f32>)> {
    match (x.dtype(), x.rank()) {
        (DType::U8, 3) => {
            let (_, h, w) = x.dims3()?;
            let d = (x.to_dtype(DType::F32)? / 255.0)?.flatten_all()?.to_vec1()?;
            Ok((1, h, w, d))
        }
        (DType::U8, 4) => {
            let (_, h, w, c) = x.dims4()?;
            let d = (x.permute((0, 3, 1, 2))?.to_dtype(DType::F32)? / 255.0)?
                .flatten_all()?
                .to_vec1()?;
            Ok((c, h, w, d))
        }
        (DType::F32 | DType::F64, 4) => {
            let (_, c, h, w) = x.dims4()?;
            let d: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            if let Some(v) = d.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(Error::format(
                    p,
                    format!("float images must be NCHW in [0,1]; found value {v}"),
                ));
            }
            Ok((c, h, w, d))
        }
        (d, r) => Err(Error::format(
            p,
            format!(
                "images must be uint8 NHWC / NHW or float32 NCHW in [0,1]; found {d:?} with {r} dimensions {:?}",
                x.dims()
            ),
        )),
    }
}

pub fn load(p: &Path) -> Result<ImageSet> {
    let npz = candle_core::npy::NpzTensors::new(p)
        .map_err(|e| Error::format(p, format!("not a readable .npz file: {e}")))?;
    let x = get(&npz, p, "x")?;
    let y = get(&npz, p, "y")?;
    let (c, h, w, data) = images_from(&x, p)?;
    let labels = labels_from(&y, p)?;
    if labels.len() * c * h * w != data.len() {
        return Err(Error::format(
            p,
            format!(
                "'x' has {} images but 'y' has {} labels",
                data.len() / (c * h * w).max(1),
                labels.len()
            ),
        ));
    }
    let k = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    ImageSet {
        name: p.display().to_string(),
        channels: c,
        height: h,
        width: w,
        data,
        labels,
        class_names: (0..k).map(|i| i.to_string()).collect(),
        norm: Family::Unknown.norm(),
    }
    .validated()
}
