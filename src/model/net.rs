//! The network inside a [`super::Model`]: a ResNet (candle's graph for
//! training and gradients, with its fused CPU and cuDNN forms) or a network
//! described as layers ([`LayerNet`]: ViT, ConvNeXt, EfficientNet), and
//! what every front end asks of either: channels, classes, variant name,
//! taps, features.

use super::described::LayerNet;
use super::resnet::ResNet;
use super::tap::Tap;
use candle_core::Tensor;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum Net {
    ResNet(ResNet),
    Layers(Arc<LayerNet>),
}

impl Net {
    pub fn in_channels(&self) -> usize {
        match self {
            Net::ResNet(r) => r.config.in_channels,
            Net::Layers(l) => l.in_channels,
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Net::ResNet(r) => r.config.num_classes,
            Net::Layers(l) => l.num_classes,
        }
    }

    /// "ResNet", "ViT", "ConvNeXt", "EfficientNet".
    pub fn family(&self) -> &'static str {
        match self {
            Net::ResNet(_) => "ResNet",
            Net::Layers(l) => l.family,
        }
    }

    /// The torchvision variant (`resnet50`, `vit_b_16`), or a description
    /// of the configuration when it matches none.
    pub fn arch_name(&self) -> String {
        match self {
            Net::ResNet(r) => r.config.arch_name(),
            Net::Layers(l) => l.arch.clone(),
        }
    }

    /// Every tap with its feature size and the module it reads, logits last.
    pub fn taps(&self) -> Vec<(Tap, usize, String)> {
        match self {
            Net::ResNet(r) => {
                let c = &r.config;
                let mut v: Vec<(Tap, usize, String)> = (1..=c.layers.len())
                    .map(|i| {
                        (
                            Tap::Layer(i as u8),
                            c.stage_channels(i - 1),
                            format!("layer{i} (pooled)"),
                        )
                    })
                    .collect();
                v.push((Tap::Penultimate, c.penultimate_dim(), "avgpool".into()));
                v.push((Tap::Logits, c.num_classes, "fc".into()));
                v
            }
            Net::Layers(l) => l.taps.clone(),
        }
    }

    /// Features at `tap` for normalised images (eval mode unless `train`,
    /// which only a ResNet has).
    pub fn features(&self, x: &Tensor, tap: Tap, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Net::ResNet(r) => r.features(x, tap, train),
            Net::Layers(l) => Ok(l
                .features_many(x, &[tap])?
                .pop()
                .expect("one tap asked, one given")),
        }
    }

    pub fn resnet(&self) -> Option<&ResNet> {
        match self {
            Net::ResNet(r) => Some(r),
            Net::Layers(_) => None,
        }
    }
}
