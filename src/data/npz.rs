//! `.npz` datasets: `x` as uint8 in 0..255 or float in [0,1], laid out NHW
//! (gray), NHWC or NCHW (the channel axis is the one of size 1 or 3; when both
//! or neither are, uint8 is taken as NHWC and float as NCHW); `y` integer
//! labels. Arrays `x`/`y`, or per split `x_test`/`y_test`, `x_train`/`y_train`.
//! Stored (`np.savez`) and compressed (`np.savez_compressed`) files.

use super::npyz::{is_integer, Npz};
use super::set::{Family, ImageSet, Split};
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use std::path::Path;

/// The images and labels arrays: `x`/`y`, else the split's `x_test`/`y_test`
/// or `x_train`/`y_train` (Keras layout: `mnist.npz`, `cifar10.npz`, ...).
fn get(npz: &Npz, p: &Path, split: Split) -> Result<(Tensor, Tensor)> {
    let names = npz.names();
    let suffix = match split {
        Split::Train => "train",
        Split::Test => "test",
    };
    let keyed = [
        ("x".to_string(), "y".to_string()),
        (format!("x_{suffix}"), format!("y_{suffix}")),
    ];
    let Some((xk, yk)) = keyed.iter().find(|(x, _)| names.contains(x)) else {
        return Err(Error::format(
            p,
            format!(
                "npz has no array 'x' (it has: {}); expected 'x' (images) and 'y' (labels), or 'x_{suffix}' and 'y_{suffix}'",
                names.join(", ")
            ),
        ));
    };
    let x = npz.get(xk)?.expect("listed");
    let y = npz.get(yk)?.ok_or_else(|| {
        Error::format(
            p,
            format!(
                "npz has images '{xk}' but no labels '{yk}' (it has: {})",
                names.join(", ")
            ),
        )
    })?;
    Ok((x, y))
}

/// Labels from any integer array, checked for negatives.
/// Labels: class indices (shape N, or N x 1), integers or whole-valued floats,
/// checked for negatives.
pub fn labels_from(t: &Tensor, p: &Path) -> Result<Vec<u32>> {
    if t.rank() > 1 && t.dims()[1..].iter().any(|&d| d != 1) {
        return Err(Error::format(
            p,
            format!(
                "labels must be class indices of shape [N]; found shape {:?} (one-hot labels? store their argmax)",
                t.dims()
            ),
        ));
    }
    let t = t.flatten_all()?;
    let v: Vec<i64> = if is_integer(t.dtype()) {
        t.to_dtype(DType::I64)?.to_vec1()?
    } else {
        let f: Vec<f64> = t.to_dtype(DType::F64)?.to_vec1()?;
        if let Some((i, y)) = f
            .iter()
            .enumerate()
            .find(|(_, y)| y.fract() != 0.0 || !y.is_finite())
        {
            return Err(Error::format(
                p,
                format!("labels must be whole numbers (class indices); found {y} at sample {i}"),
            ));
        }
        f.into_iter().map(|y| y as i64).collect()
    };
    if let Some((i, y)) = v.iter().enumerate().find(|(_, &y)| y < 0) {
        return Err(Error::format(
            p,
            format!("negative label {y} at sample {i}"),
        ));
    }
    // Every class up to the largest label gets a name: a label must not
    // make that list larger than any real dataset's.
    if let Some((i, y)) = v.iter().enumerate().find(|(_, &y)| y >= MAX_CLASSES as i64) {
        return Err(Error::format(
            p,
            format!(
                "label {y} at sample {i} is too large: semcon reads up to {MAX_CLASSES} classes (labels 0..{})",
                MAX_CLASSES - 1
            ),
        ));
    }
    Ok(v.into_iter().map(|y| y as u32).collect())
}

/// The most classes a label array may imply (ImageNet-21k has 21,841).
pub const MAX_CLASSES: usize = 100_000;

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
                "images must be uint8 (0..255) or float (in [0,1]); found wider integers with shape {:?}",
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

pub fn load(p: &Path, split: Split) -> Result<ImageSet> {
    let npz = Npz::open(p)?;
    let (x, y) = get(&npz, p, split)?;
    let (c, h, w, data) = images_from(&x, p)?;
    let labels = labels_from(&y, p)?;
    if labels.len() != x.dim(0)? {
        return Err(Error::format(
            p,
            format!(
                "the images have {} samples but the labels {}",
                x.dim(0)?,
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
        data: data.into(),
        labels,
        class_names: (0..k).map(|i| i.to_string()).collect(),
        norm: Family::Unknown.norm(),
    }
    .validated()
}
