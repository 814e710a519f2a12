//! The ResNet family with torchvision parameter names: BasicBlock
//! (ResNet-18/34) and Bottleneck (ResNet-50/101/152) networks of any depth,
//! Wide ResNets (`width_per_group`) and ResNeXts (`groups`); "imagenet" stem
//! (7x7/2 conv + 3x3/2 maxpool) or "cifar" stem (3x3/1 conv, no maxpool), any
//! width, class count and input channels. The configuration is inferred from
//! a state dict's keys and shapes.

use super::cpu::conv::conv2d_grouped;
use super::cpu::folded::FConv;
use super::cpu::fused::{FBlock, FusedNet};
use super::tap::Tap;
use crate::error::{Error, Result};
use candle_core::{Module, ModuleT, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, VarBuilder};
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
            err(format!(
                "missing tensor 'conv1.weight': not a torchvision ResNet state dict (first keys: {})",
                some.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
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

/// A BatchNorm-ed convolution, the unit of every ResNet layer.
#[derive(Clone, Debug)]
struct ConvBn {
    w: Tensor,
    bn: BatchNorm,
    stride: usize,
    pad: usize,
    groups: usize,
}

impl ConvBn {
    fn new(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        Self::grouped(vb, conv, bn, (cin, cout, 1), k, stride)
    }

    /// A convolution of `groups` groups (`cin` and `cout` divisible by it).
    fn grouped(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        (cin, cout, groups): (usize, usize, usize),
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        let w = vb.pp(conv).get_with_hints(
            (cout, cin / groups, k, k),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let cfg = BatchNormConfig {
            eps: BN_EPS,
            remove_mean: true,
            affine: true,
            momentum: 0.1,
        };
        let bn = candle_nn::batch_norm(cout, cfg, vb.pp(bn))?;
        Ok(ConvBn {
            w,
            bn,
            stride,
            pad: k / 2,
            groups,
        })
    }
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if train {
            let y = conv2d_grouped(x, &self.w, self.stride, self.pad, self.groups)?;
            return self.bn.forward_t(&y, true);
        }
        // Eval mode: BatchNorm folded into the convolution (one pass instead of
        // five). Differentiable w.r.t. x (PGD) and cheap (weight-sized).
        let (w, shift) = self.folded()?;
        let c = shift.dim(0)?;
        conv2d_grouped(x, &w, self.stride, self.pad, self.groups)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?)
    }

    /// The eval-mode weight and bias with BatchNorm folded in:
    /// w' = w * g/sqrt(var+eps), b' = beta - mean * g/sqrt(var+eps).
    fn folded(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let (g, beta) = self.bn.weight_and_bias().expect("affine BatchNorm");
        let scale = (g / (self.bn.running_var() + self.bn.eps())?.sqrt()?)?;
        let shift = (beta - (self.bn.running_mean() * &scale)?)?;
        let c = scale.dim(0)?;
        let w = self.w.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        Ok((w, shift))
    }

    /// The folded convolution of the fused paths; `None` for a grouped one
    /// (those run through candle's graph).
    fn fused(&self) -> candle_core::Result<Option<FConv>> {
        if self.groups != 1 {
            return Ok(None);
        }
        let (w, b) = self.folded()?;
        FConv::new(&w, &b, self.stride, self.pad).map(Some)
    }
}

#[derive(Clone, Debug)]
struct ResBlock {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl ResBlock {
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, c) in self.convs.iter().enumerate() {
            y = c.forward(&y, train)?;
            if i != last {
                y = y.relu()?;
            }
        }
        let id = match &self.downsample {
            Some(d) => d.forward(x, train)?,
            None => x.clone(),
        };
        (y + id)?.relu()
    }
}

#[derive(Clone, Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    stem: ConvBn,
    stages: Vec<Vec<ResBlock>>,
    fc: candle_nn::Linear,
}

impl ResNet {
    /// Builds the network from a VarBuilder (loaded tensors, or a VarMap for training).
    pub fn new(config: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let (k, s) = match config.stem {
            Stem::Cifar => (3, 1),
            Stem::Imagenet => (7, 2),
        };
        let stem = ConvBn::new(&vb, "conv1", "bn1", config.in_channels, config.width, k, s)?;
        let mut stages = Vec::new();
        let mut inplanes = config.width;
        for (i, &n) in config.layers.iter().enumerate() {
            let planes = config.width << i;
            let out = planes * config.block.expansion();
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = Vec::new();
            for j in 0..n {
                let vbb = vb.pp(format!("layer{}.{}", i + 1, j));
                let cin = if j == 0 { inplanes } else { out };
                let st = if j == 0 { stride } else { 1 };
                let convs = match config.block {
                    Block::Basic => vec![
                        ConvBn::new(&vbb, "conv1", "bn1", cin, planes, 3, st)?,
                        ConvBn::new(&vbb, "conv2", "bn2", planes, planes, 3, 1)?,
                    ],
                    Block::Bottleneck => {
                        let inner = config.inner_channels(i);
                        let g = (inner, inner, config.groups.max(1));
                        vec![
                            ConvBn::new(&vbb, "conv1", "bn1", cin, inner, 1, 1)?,
                            ConvBn::grouped(&vbb, "conv2", "bn2", g, 3, st)?,
                            ConvBn::new(&vbb, "conv3", "bn3", inner, out, 1, 1)?,
                        ]
                    }
                };
                let downsample = if j == 0 && (st != 1 || inplanes != out) {
                    Some(ConvBn::new(
                        &vbb,
                        "downsample.0",
                        "downsample.1",
                        cin,
                        out,
                        1,
                        st,
                    )?)
                } else {
                    None
                };
                blocks.push(ResBlock { convs, downsample });
            }
            stages.push(blocks);
            inplanes = out;
        }
        let fc = candle_nn::linear(inplanes, config.num_classes, vb.pp("fc"))?;
        Ok(ResNet {
            config: config.clone(),
            stem,
            stages,
            fc,
        })
    }

    /// Features at `tap` for normalised input `x` ([b, c, h, w]).
    pub fn features(&self, x: &Tensor, tap: Tap, train: bool) -> candle_core::Result<Tensor> {
        let mut y = self.stem.forward(x, train)?.relu()?;
        if self.config.stem == Stem::Imagenet {
            y = max_pool_3x3_s2_p1(&y)?;
        }
        for (i, stage) in self.stages.iter().enumerate() {
            for b in stage {
                y = b.forward(&y, train)?;
            }
            if tap == Tap::Layer(i as u8 + 1) {
                return y.mean((2, 3));
            }
        }
        let pooled = y.mean((2, 3))?;
        if tap == Tap::Penultimate {
            return Ok(pooled);
        }
        self.fc.forward(&pooled)
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.features(x, Tap::Logits, train)
    }

    /// The eval-mode network folded for the fused CPU path (f32 weights only).
    pub(crate) fn fused(&self, mean: &[f32], std: &[f32]) -> candle_core::Result<Option<FusedNet>> {
        if self.fc.weight().dtype() != candle_core::DType::F32 || self.config.groups != 1 {
            return Ok(None);
        }
        let blocks = self
            .stages
            .iter()
            .enumerate()
            .flat_map(|(i, st)| st.iter().map(move |b| (i as u8 + 1, b)))
            .map(|(stage, b)| {
                Ok(FBlock {
                    stage,
                    convs: b
                        .convs
                        .iter()
                        .map(|c| c.fused()?.ok_or_else(grouped))
                        .collect::<candle_core::Result<_>>()?,
                    down: match &b.downsample {
                        Some(d) => Some(d.fused()?.ok_or_else(grouped)?),
                        None => None,
                    },
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let fc_w = self.fc.weight().flatten_all()?.to_vec1::<f32>()?;
        let fc_b = match self.fc.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; self.config.num_classes],
        };
        Ok(Some(FusedNet {
            stem: self.stem.fused()?.ok_or_else(grouped)?,
            maxpool: self.config.stem == Stem::Imagenet,
            blocks,
            fc_w,
            fc_b,
            mean: mean.to_vec(),
            std: std.to_vec(),
        }))
    }
}

/// The error of a grouped convolution reaching the fused network (which
/// [`ResNet::fused`] rules out).
fn grouped() -> candle_core::Error {
    candle_core::Error::Msg("grouped convolutions have no fused form".into())
}

/// torchvision's `MaxPool2d(3, stride=2, padding=1)` (padding never wins the max).
fn max_pool_3x3_s2_p1(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.track_op() {
        // candle's max_pool2d has no backward for a 3x3 window at stride 2.
        return max_pool_3x3_s2_p1_differentiable(x);
    }
    // Edge replication is exact here: a replicated value is already in its window.
    let xp = x.pad_with_same(2, 1, 1)?.pad_with_same(3, 1, 1)?;
    xp.max_pool2d_with_stride(3, 2)
}

/// The same pool as the maximum of the nine strided window offsets (each a
/// narrow + even-index selection), which candle can differentiate; padding is
/// -inf so it never ties with a real value. (On an exact tie inside a window
/// candle's `maximum` passes the gradient to both values, PyTorch to the first.)
fn max_pool_3x3_s2_p1_differentiable(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let pad =
        |t: &Tensor, dim: usize, before: usize, after: usize| -> candle_core::Result<Tensor> {
            let mut shape = t.dims().to_vec();
            let mut parts = Vec::new();
            for n in [before, after] {
                shape[dim] = n;
                parts.push(
                    Tensor::full(f32::NEG_INFINITY, shape.as_slice(), t.device())?
                        .to_dtype(t.dtype())?,
                );
            }
            Tensor::cat(&[&parts[0], t, &parts[1]], dim)
        };
    let xp = pad(x, 2, 1, 2 * oh + 1 - h)?;
    let xp = pad(&xp, 3, 1, 2 * ow + 1 - w)?;
    let mut out: Option<Tensor> = None;
    for ki in 0..3 {
        for kj in 0..3 {
            let v = xp
                .narrow(2, ki, 2 * oh)?
                .narrow(3, kj, 2 * ow)?
                .contiguous()?
                .reshape((b, c, oh, 2, ow, 2))?
                .narrow(3, 0, 1)?
                .narrow(5, 0, 1)?
                .reshape((b, c, oh, ow))?;
            out = Some(match out {
                None => v,
                Some(m) => m.maximum(&v)?,
            });
        }
    }
    Ok(out.expect("nine offsets"))
}
