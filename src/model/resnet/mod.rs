//! The ResNet family with torchvision parameter names: BasicBlock
//! (ResNet-18/34) and Bottleneck (ResNet-50/101/152) networks of any depth,
//! Wide ResNets (`width_per_group`) and ResNeXts (`groups`); "imagenet" stem
//! (7x7/2 conv + 3x3/2 maxpool) or "cifar" stem (3x3/1 conv, no maxpool), any
//! width, class count and input channels. The configuration is inferred from
//! a state dict's keys and shapes.
//!
//! [`config`]: the configuration inferred from a state dict; [`net`]: the
//! network built from it.

pub mod config;
pub mod net;

pub use config::{Block, ResNetConfig, Stem, BN_EPS};
pub use net::ResNet;
