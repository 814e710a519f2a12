//! The convolution used by every model. One function, so the fastest path per
//! device can be chosen in one place.

use candle_core::{Result, Tensor};

/// 2-D convolution, NCHW input, OIHW weight, symmetric padding, no bias.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.conv2d(w, pad, stride, 1, 1)
}
