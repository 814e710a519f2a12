//! The CUDA kernels (`cudnn` builds): the eval-mode network through cuDNN,
//! the GPU twin of [`super::cpu::fused`], for inference and PGD.

mod cudnn;
mod net;

pub use cudnn::tf32_allowed;
pub use net::GpuNet;
