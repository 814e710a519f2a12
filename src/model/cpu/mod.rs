//! The CPU kernels:
//!
//! * [`im2col`]: the layout transforms and the gemm wrapper both paths use;
//! * [`conv`]: the im2col + gemm convolution every model's candle graph uses,
//!   with its backward passes as candle custom ops (training, gradients);
//! * [`depthwise`]: the depthwise convolution (`groups` = channels) with
//!   its backward passes;
//! * [`gelu`]: torch's exact GELU and its backward on every core;
//! * [`layernorm`]: LayerNorm's normalisation over one dimension and its
//!   backward pass;
//! * [`softmax`]: softmax over the last dimension and its backward (attention);
//! * [`folded`]: one convolution with BatchNorm folded in, forward with the
//!   bias + residual + ReLU epilogue, and backward;
//! * [`fused`]: the eval-mode network of folded convolutions with a
//!   hand-written input-gradient pass, for inference and PGD.

pub mod attention;
pub mod channel;
pub mod conv;
pub mod depthwise;
pub mod folded;
pub mod fused;
pub mod gelu;
pub mod grouped;
pub mod im2col;
pub mod layernorm;
pub mod linear;
pub mod silu;
pub mod softmax;
