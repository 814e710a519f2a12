//! What the kernels' unit tests share (test builds only).

use candle_core::{DType, Tensor};

/// The largest |a - b| over two tensors of one shape, as f64.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    d.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}
