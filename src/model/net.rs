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

    /// The unpooled activations at a convolutional stage `tap` for
    /// normalised images (eval mode): GradCAM's layer.
    pub fn maps(&self, x: &Tensor, tap: Tap) -> candle_core::Result<Tensor> {
        match self {
            Net::ResNet(r) => r.maps(x, resnet_stage(r, tap)?),
            Net::Layers(l) => l.maps(x, tap),
        }
    }

    /// The logits from [`Net::maps`]'s activations at `tap` (the rest of
    /// the network, differentiable).
    pub fn logits_from_maps(&self, maps: &Tensor, tap: Tap) -> candle_core::Result<Tensor> {
        match self {
            Net::ResNet(r) => r.logits_from_maps(maps, resnet_stage(r, tap)?),
            Net::Layers(l) => l.logits_from_maps(maps, tap),
        }
    }

    pub fn resnet(&self) -> Option<&ResNet> {
        match self {
            Net::ResNet(r) => Some(r),
            Net::Layers(_) => None,
        }
    }
}

/// The stage number of a ResNet's `layerN` tap.
fn resnet_stage(r: &ResNet, tap: Tap) -> candle_core::Result<usize> {
    let n = r.config.layers.len();
    match tap {
        Tap::Layer(i) if (1..=n).contains(&(i as usize)) => Ok(i as usize),
        _ => candle_core::bail!(
            "a ResNet's convolutional stages are layer1..layer{n}; '{tap}' is none of them"
        ),
    }
}
