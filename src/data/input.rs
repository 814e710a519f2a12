//! Images given as arrays (`--input X.npy`): float32 NCHW in [0,1], checked
//! and wrapped as an [`ImageSet`] with unknown labels.

use super::npyz::read_npy_file;
use super::set::ImageSet;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use std::path::Path;

/// Reads float32 NCHW images in [0,1] from a .npy file.
pub fn read_input_npy(p: &Path) -> Result<Tensor> {
    let t = read_npy_file(p)?;
    if t.rank() != 4 {
        return Err(Error::format(
            p,
            format!("images must be float32 NCHW, got shape {:?}", t.dims()),
        ));
    }
    if t.elem_count() == 0 {
        return Err(Error::format(
            p,
            format!("holds no pixels (shape {:?})", t.dims()),
        ));
    }
    let t = t.to_dtype(DType::F32)?;
    let (lo, hi) = (
        t.min_all()?.to_scalar::<f32>()?,
        t.max_all()?.to_scalar::<f32>()?,
    );
    if !(lo >= 0.0 && hi <= 1.0) {
        return Err(Error::format(
            p,
            format!("images must be in [0,1], found values in [{lo}, {hi}]"),
        ));
    }
    Ok(t)
}

/// `--input` images ([`read_input_npy`]) as a set with unknown labels (0).
pub fn read_input_set(p: &Path) -> Result<ImageSet> {
    let t = read_input_npy(p)?;
    let (n, c, h, w) = t.dims4()?;
    Ok(ImageSet {
        name: p.display().to_string(),
        channels: c,
        height: h,
        width: w,
        data: t.flatten_all()?.to_vec1::<f32>()?.into(),
        labels: vec![0; n],
        class_names: Vec::new(),
        norm: None,
    })
}
