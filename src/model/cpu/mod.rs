//! The CPU kernels:
//!
//! * [`im2col`]: the layout transforms and the gemm wrapper both paths use;
//! * [`conv`]: the im2col + gemm convolution every model's candle graph uses,
//!   with its backward passes as candle custom ops (training, gradients);
//! * [`depthwise`]: the depthwise convolution (`groups` = channels) with
//!   its backward passes;
//! * [`grouped`]: grouped convolutions (ResNeXt), and the one-pass
//!   convolution + bias of the described families;
//! * [`gelu`], [`silu`]: torch's exact GELU and SiLU with their backward,
//!   on every core;
//! * [`layernorm`]: LayerNorm over one dimension (its affine part in the
//!   same pass where no gradient flows) and its backward pass;
//! * [`softmax`]: softmax over the last dimension and its backward;
//! * [`linear`]: `x W^T + b` as one op, and its input gradient;
//! * [`mlp`]: ConvNeXt's pointwise MLP one block of pixels at a time;
//! * [`attention`]: multi-head attention's core per (image, head) pair, and
//!   its backward;
//! * [`simd`]: which vector instructions the CPU has, and `widest!`, one
//!   loop compiled for each;
//! * [`storage`]: a candle CPU storage's values as a typed slice, for
//!   the custom ops;
//! * [`channel`]: per-channel and per-plane affine maps, residual adds and
//!   global average pooling on rayon's threads;
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
pub mod mlp;
pub mod silu;
pub mod simd;
pub mod softmax;
pub mod storage;
#[cfg(test)]
mod testing;
