//! `.npz` datasets: `x` as uint8 in 0..255 or float in [0,1], laid out NHW
//! (gray), NHWC or NCHW (the channel axis is the one of size 1 or 3; when both
//! or neither are, uint8 is taken as NHWC and float as NCHW); `y` integer
//! labels.

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

/// Images from an array: uint8 (0..255) or float in [0,1], NHW/NHWC/NCHW.
/// Returns (c, h, w, data).
pub fn images_from(x: &Tensor, p: &Path) -> Result<(usize, usize, usize, Vec<f32>)> {
    // v / 255 in f32, as numpy's `x.astype(np.float32) / 255` (candle's
    // `tensor / 255.0` multiplies by 1/255, which differs in the last bit).
    let u8_to_f32 = |t: &Tensor| -> Result<Vec<f32>> {
        let v: Vec<u8> = t.flatten_all()?.to_vec1()?;
        Ok(v.into_iter().map(|b| b as f32 / 255.0).collect())
    };
    let float = matches!(
        x.dtype(),
        DType::F32 | DType::F64 | DType::F16 | DType::BF16
    );
    let to_f32 = |t: &Tensor| -> Result<Vec<f32>> {
        if x.dtype() == DType::U8 {
            return u8_to_f32(t);
        }
        let d: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if let Some(v) = d.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            let hint = if d.iter().all(|v| (0.0..=255.0).contains(v)) {
                " (values look like 0..255: store uint8, or divide by 255)"
            } else {
                ""
            };
            return Err(Error::format(
                p,
                format!("float images must be in [0,1]; found value {v}{hint}"),
            ));
        }
        Ok(d)
    };
    if x.dtype() != DType::U8 && !float {
        return Err(Error::format(
            p,
            format!(
                "images must be uint8 (0..255) or float (in [0,1]); found {:?} with shape {:?}",
                x.dtype(),
                x.dims()
            ),
        ));
    }
    match x.rank() {
        3 => {
            let (_, h, w) = x.dims3()?;
            Ok((1, h, w, to_f32(x)?))
        }
        4 => {
            let (_, d1, _, d3) = x.dims4()?;
            let chan = |d: usize| d == 1 || d == 3;
            // The channel axis is the one of size 1 or 3; when that does not
            // tell, uint8 is NHWC (numpy/Keras) and float is NCHW (PyTorch).
            let nhwc = match (chan(d1), chan(d3)) {
                (false, true) => true,
                (true, false) => false,
                _ => !float,
            };
            if nhwc {
                let (_, h, w, c) = x.dims4()?;
                Ok((c, h, w, to_f32(&x.permute((0, 3, 1, 2))?.contiguous()?)?))
            } else {
                let (_, c, h, w) = x.dims4()?;
                Ok((c, h, w, to_f32(x)?))
            }
        }
        r => Err(Error::format(
            p,
            format!(
                "images must be N x H x W (gray), N x H x W x C or N x C x H x W; found {r} dimensions {:?}",
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
