//! The depthwise kernels against candle's grouped convolution and autograd.

use super::*;
use crate::model::cpu::conv::split_groups;
use crate::model::cpu::testing::max_diff;
use candle_core::{DType, Device, Var};

/// Against the grouped im2col convolution (itself checked against
/// PyTorch), forward and both gradients, in f64, for strides 1 and 2,
/// kernels 3, 5 and 7, odd sizes.
#[test]
fn matches_grouped_convolution() {
    let dev = Device::Cpu;
    // 3 channels: all in the remainder; 70: two register blocks and 6.
    for (c, k, stride, pad, h, w) in [
        (3, 3, 1, 1, 7, 9),
        (3, 3, 2, 1, 8, 7),
        (3, 5, 2, 2, 9, 11),
        (3, 7, 1, 3, 6, 5),
        (3, 3, 1, 0, 4, 4),
        (3, 7, 1, 3, 1, 2),
        (3, 5, 2, 2, 1, 1),
        (3, 7, 1, 3, 2, 9),
        (70, 7, 1, 3, 6, 5),
        (70, 3, 2, 1, 9, 8),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f64, 1., (2, c, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f64, 1., (c, 1, k, k), &dev).unwrap()).unwrap();
        let a = depthwise_conv2d(x.as_tensor(), wt.as_tensor(), stride, pad).unwrap();
        let b = split_groups(x.as_tensor(), wt.as_tensor(), stride, pad, c).unwrap();
        assert_eq!(a.dims(), b.dims());
        assert!(max_diff(&a, &b) < 1e-10, "forward k{k} s{stride}");
        let r = Tensor::randn(0f64, 1., a.dims(), &dev).unwrap();
        let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &wt] {
            let (p, q) = (ga.get(v).unwrap(), gb.get(v).unwrap());
            assert!(max_diff(p, q) < 1e-10, "gradient k{k} s{stride}");
        }
    }
    let x = Tensor::zeros((1, 2, 3, 3), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((2, 1, 5, 5), DType::F32, &dev).unwrap();
    assert!(depthwise_conv2d(&x, &w, 1, 0).is_err());
}
