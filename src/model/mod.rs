//! Models: a classifier ([`Model`]) loaded from a checkpoint, with
//! normalisation inside it and feature taps; one file per architecture
//! family; the kernels that run them by device.
//!
//! * family-independent: [`checkpoint`] (reading `.safetensors`/`.pth` and
//!   sidecars; [`pickle_scan`] refuses pickles that call anything but what a
//!   state dict needs; [`pth`] reads the tensors of a torch.save archive with
//!   every index and size checked), [`keys`] (wrapper prefixes), [`load`] (state dict -> model),
//!   [`norm`], [`tap`], [`classifier`] (the `Model` type);
//! * families: [`resnet`] (configuration inferred from the keys, candle graph
//!   for training and gradients, and the folded form for the fused paths);
//!   [`vit`], [`convnext`], [`efficientnet`], each building one description
//!   of its layers ([`described`], [`layers`]) that every device and the
//!   input gradient run ([`backward`]: that gradient by hand on the CPU);
//!   [`net`] the network a `Model` holds, either kind;
//! * kernels: [`cpu`] (im2col + gemm convolution, the fused eval-mode
//!   network), `cuda` (the cuDNN network; `cudnn` builds).

pub mod backward;
pub mod checkpoint;
pub mod classifier;
pub mod convnext;
pub mod cpu;
#[cfg(feature = "cudnn")]
pub mod cuda;
pub mod described;
pub mod efficientnet;
pub mod keys;
pub mod layers;
pub mod load;
pub mod net;
pub mod norm;
pub mod pickle_scan;
pub mod pth;
pub mod resnet;
pub mod tap;
pub mod vit;

pub use classifier::{common_taps, Model};
pub use load::{load, load_named, ModelOptions};
pub use resnet::{ResNet, ResNetConfig, Stem};
pub use tap::Tap;
