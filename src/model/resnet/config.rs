//! A ResNet's configuration ([`ResNetConfig`]): block type, blocks per
//! stage, stem, widths and grouping, inferred from a state dict's keys and
//! shapes; torchvision's variant names, every expected tensor and the
//! parameter count.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3x3 stride-1 conv, no maxpool (CIFAR-style, small images).
    Cifar,
    /// 7x7 stride-2 conv + 3x3 stride-2 maxpool (torchvision default).
    Imagenet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    pub fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// Everything needed to build a ResNet; inferable from a state dict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub block: Block,
    /// Blocks per stage, e.g. [2,2,2,2] for ResNet-18.
    pub layers: Vec<usize>,
    pub stem: Stem,
    /// Output channels of the stem (64 in torchvision; the width multiplier times 64).
    pub width: usize,
    pub in_channels: usize,
    pub num_classes: usize,
    /// Groups of the 3x3 convolution of a Bottleneck (ResNeXt; 1 otherwise).
    #[serde(default = "one")]
    pub groups: usize,
    /// Channels inside the first stage's Bottleneck (torchvision's
    /// `int(planes * width_per_group / 64) * groups`; `width` for a plain
    /// ResNet, twice that for a Wide ResNet-50-2); doubles per stage.
    #[serde(default)]
    pub bottleneck_width: usize,
}

fn one() -> usize {
    1
}

pub const BN_EPS: f64 = 1e-5;

impl ResNetConfig {
    /// The standard architectures by name (resnet18, resnet34, resnet50).
    pub fn named(
        arch: &str,
        stem: Stem,
        width: usize,
        in_channels: usize,
        num_classes: usize,
    ) -> Result<Self> {
        let (block, layers) = match arch {
            "resnet18" => (Block::Basic, vec![2, 2, 2, 2]),
            "resnet34" => (Block::Basic, vec![3, 4, 6, 3]),
            "resnet50" => (Block::Bottleneck, vec![3, 4, 6, 3]),
            a => {
                return Err(crate::invalid!(
                    "unknown architecture '{a}' (available: resnet18, resnet34, resnet50)"
                ))
            }
        };
        Ok(ResNetConfig {
            block,
            layers,
            stem,
            width,
            in_channels,
            num_classes,
            groups: 1,
            bottleneck_width: width,
        })
    }

    /// Channels inside the Bottlenecks of stage `i` (0-based).
    pub fn inner_channels(&self, i: usize) -> usize {
        let base = if self.bottleneck_width == 0 {
            self.width
        } else {
            self.bottleneck_width
        };
        base << i
    }

    /// torchvision's `width_per_group` of this network (64 for plain ResNets).
    pub fn width_per_group(&self) -> usize {
        self.inner_channels(0) * 64 / (self.width.max(1) * self.groups.max(1))
    }

    /// The closest torchvision variant ("resnet50", "wide_resnet50_2",
    /// "resnext50_32x4d", ...; the stem width is not part of the name), or a
    /// description of a custom depth and grouping.
    pub fn arch_name(&self) -> String {
        let (g, wpg) = (self.groups, self.width_per_group());
        let known = match (self.block, self.layers.as_slice(), g, wpg) {
            (Block::Basic, [2, 2, 2, 2], 1, 64) => "resnet18",
            (Block::Basic, [3, 4, 6, 3], 1, 64) => "resnet34",
            (Block::Bottleneck, [3, 4, 6, 3], 1, 64) => "resnet50",
            (Block::Bottleneck, [3, 4, 23, 3], 1, 64) => "resnet101",
            (Block::Bottleneck, [3, 8, 36, 3], 1, 64) => "resnet152",
            (Block::Bottleneck, [3, 4, 6, 3], 1, 128) => "wide_resnet50_2",
            (Block::Bottleneck, [3, 4, 23, 3], 1, 128) => "wide_resnet101_2",
            (Block::Bottleneck, [3, 4, 6, 3], 32, 4) => "resnext50_32x4d",
            (Block::Bottleneck, [3, 4, 23, 3], 32, 8) => "resnext101_32x8d",
            (Block::Bottleneck, [3, 4, 23, 3], 64, 4) => "resnext101_64x4d",
            _ => "",
        };
        if !known.is_empty() {
            return known.into();
        }
        let base = format!("resnet-{:?}-{:?}", self.block, self.layers).to_lowercase();
        if g == 1 && wpg == 64 {
            base
        } else {
            format!("{base}-{g}x{wpg}d")
        }
    }

    /// Number of learnable parameters (torchvision's
    /// `sum(p.numel() for p in model.parameters())`: BatchNorm statistics
    /// are buffers, not parameters).
    pub fn parameter_count(&self) -> usize {
        self.expected_shapes()
            .iter()
            .filter(|(n, _)| !n.ends_with(".running_mean") && !n.ends_with(".running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Feature size after global pooling (input of `fc`).
    pub fn penultimate_dim(&self) -> usize {
        self.stage_channels(3)
    }
    /// Output channels of stage `i` (0-based).
    pub fn stage_channels(&self, i: usize) -> usize {
        self.width * (1 << i) * self.block.expansion()
    }

    /// Infers the configuration from tensor names and shapes (torchvision names,
    /// `module.` prefixes already stripped).
    pub fn infer(shapes: &HashMap<String, Vec<usize>>, path: &std::path::Path) -> Result<Self> {
        let err = |msg: String| Error::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let conv1 = shapes.get("conv1.weight").ok_or_else(|| {
            let mut some: Vec<&String> = shapes.keys().collect();
            some.sort();
            some.truncate(5);
            let first = some
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            err(format!(
                "not a state dict of a family semcon loads: ResNet, Wide ResNet, ResNeXt \
                 (conv1 ... fc), ViT (conv_proj ... heads.head), EfficientNet (features.0.0 ... \
                 classifier.1), ConvNeXt (features.0.0 ... classifier.2), all with torchvision's \
                 names; first keys: {first}"
            ))
        })?;
        if conv1.len() != 4 {
            return Err(err(format!(
                "tensor 'conv1.weight' has shape {conv1:?}, expected 4 dimensions"
            )));
        }
        if conv1[1] == 0 || conv1[0] == 0 {
            let what = if conv1[1] == 0 {
                "0 input channels"
            } else {
                "width 0 (no stem filters)"
            };
            return Err(err(format!(
                "tensor 'conv1.weight' has shape {conv1:?}: {what}"
            )));
        }
        let stem = match conv1[2] {
            7 => Stem::Imagenet,
            3 => Stem::Cifar,
            k => return Err(err(format!("tensor 'conv1.weight' has a {k}x{k} kernel; expected 7x7 (imagenet stem) or 3x3 (cifar stem)"))),
        };
        let block = if shapes.contains_key("layer1.0.conv3.weight") {
            Block::Bottleneck
        } else {
            Block::Basic
        };
        let mut layers = Vec::new();
        for i in 1..=4 {
            let n = (0..)
                .take_while(|j| shapes.contains_key(&format!("layer{i}.{j}.conv1.weight")))
                .count();
            if n == 0 {
                return Err(err(format!(
                    "missing tensor 'layer{i}.0.conv1.weight' (a ResNet has four stages)"
                )));
            }
            layers.push(n);
        }
        // Bottleneck: the first stage's inner width and the 3x3 convolution's
        // groups (its weight is [inner, inner / groups, 3, 3]).
        let (mut groups, mut bottleneck_width) = (1, conv1[0]);
        if block == Block::Bottleneck {
            let shape = |k: &str| {
                shapes
                    .get(k)
                    .filter(|s| s.len() == 4)
                    .ok_or_else(|| err(format!("missing or mis-shaped tensor '{k}'")))
            };
            let c1 = shape("layer1.0.conv1.weight")?;
            let c2 = shape("layer1.0.conv2.weight")?;
            bottleneck_width = c1[0];
            if c2[1] == 0 || c2[0] != c1[0] || c2[0] % c2[1] != 0 {
                return Err(err(format!(
                    "tensor 'layer1.0.conv2.weight' has shape {c2:?}, which does not fit \
                     'layer1.0.conv1.weight' {c1:?} (a grouped 3x3 convolution is [C, C / groups, 3, 3])"
                )));
            }
            groups = c2[0] / c2[1];
        }
        let fc = shapes
            .get("fc.weight")
            .ok_or_else(|| err("missing tensor 'fc.weight'".into()))?;
        if fc.len() != 2 {
            return Err(err(format!(
                "tensor 'fc.weight' has shape {fc:?}, expected 2 dimensions"
            )));
        }
        if fc[0] == 0 {
            return Err(err(format!(
                "tensor 'fc.weight' has shape {fc:?}: 0 classes"
            )));
        }
        Ok(ResNetConfig {
            block,
            layers,
            stem,
            width: conv1[0],
            in_channels: conv1[1],
            num_classes: fc[0],
            groups,
            bottleneck_width,
        })
    }

    /// Every parameter and buffer (torchvision names) with its shape.
    pub fn expected_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        let k = match self.stem {
            Stem::Cifar => 3,
            Stem::Imagenet => 7,
        };
        let bn = |v: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            for s in ["weight", "bias", "running_mean", "running_var"] {
                v.push((format!("{p}.{s}"), vec![c]));
            }
        };
        v.push((
            "conv1.weight".into(),
            vec![self.width, self.in_channels, k, k],
        ));
        bn(&mut v, "bn1", self.width);
        let mut inplanes = self.width;
        for (i, &n) in self.layers.iter().enumerate() {
            let planes = self.width << i;
            let out = planes * self.block.expansion();
            for j in 0..n {
                let p = format!("layer{}.{}", i + 1, j);
                let cin = if j == 0 { inplanes } else { out };
                match self.block {
                    Block::Basic => {
                        v.push((format!("{p}.conv1.weight"), vec![planes, cin, 3, 3]));
                        bn(&mut v, &format!("{p}.bn1"), planes);
                        v.push((format!("{p}.conv2.weight"), vec![planes, planes, 3, 3]));
                        bn(&mut v, &format!("{p}.bn2"), planes);
                    }
                    Block::Bottleneck => {
                        let inner = self.inner_channels(i);
                        let g = self.groups.max(1);
                        v.push((format!("{p}.conv1.weight"), vec![inner, cin, 1, 1]));
                        bn(&mut v, &format!("{p}.bn1"), inner);
                        v.push((format!("{p}.conv2.weight"), vec![inner, inner / g, 3, 3]));
                        bn(&mut v, &format!("{p}.bn2"), inner);
                        v.push((format!("{p}.conv3.weight"), vec![out, inner, 1, 1]));
                        bn(&mut v, &format!("{p}.bn3"), out);
                    }
                }
                if j == 0 && (i > 0 || inplanes != out) {
                    v.push((format!("{p}.downsample.0.weight"), vec![out, cin, 1, 1]));
                    bn(&mut v, &format!("{p}.downsample.1"), out);
                }
            }
            inplanes = out;
        }
        v.push(("fc.weight".into(), vec![self.num_classes, inplanes]));
        v.push(("fc.bias".into(), vec![self.num_classes]));
        v
    }
}
