//! The ResNet as candle's graph (training, gradients w.r.t. weights, other
//! devices) with torchvision's parameter names, and its folded form for the
//! fused CPU and cuDNN networks.

use super::config::{Block, ResNetConfig, Stem, BN_EPS};
use crate::error::Result;
use crate::model::cpu::folded::FConv;
use crate::model::cpu::fused::{FBlock, FusedNet};
use crate::model::cpu::grouped::conv2d_grouped;
use crate::model::tap::Tap;
use candle_core::{Module, ModuleT, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, VarBuilder};

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

    /// The folded convolution of the fused paths.
    fn fused(&self) -> candle_core::Result<FConv> {
        let (w, b) = self.folded()?;
        FConv::new(&w, &b, self.stride, self.pad, self.groups)
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
        let stages = self.config.layers.len();
        match tap {
            Tap::Layer(i) if (i as usize) <= stages => {}
            Tap::Logits | Tap::Penultimate => {}
            _ => candle_core::bail!(
                "a ResNet has no layer '{tap}' (it has layer1..layer{stages}, penultimate, logits)"
            ),
        }
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

    /// The unpooled activations after `stage` (1-based: `layer1` is 1) for
    /// normalised input `x`, eval mode (GradCAM's layer).
    pub fn maps(&self, x: &Tensor, stage: usize) -> candle_core::Result<Tensor> {
        let mut y = self.stem.forward(x, false)?.relu()?;
        if self.config.stem == Stem::Imagenet {
            y = max_pool_3x3_s2_p1(&y)?;
        }
        for st in self.stages.iter().take(stage) {
            for b in st {
                y = b.forward(&y, false)?;
            }
        }
        Ok(y)
    }

    /// The logits from the activations after `stage` ([`ResNet::maps`]).
    pub fn logits_from_maps(&self, maps: &Tensor, stage: usize) -> candle_core::Result<Tensor> {
        let mut y = maps.clone();
        for st in self.stages.iter().skip(stage) {
            for b in st {
                y = b.forward(&y, false)?;
            }
        }
        self.fc.forward(&y.mean((2, 3))?)
    }

    /// The classifier `fc` on pooled penultimate features.
    pub fn head(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(pooled)
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.features(x, Tap::Logits, train)
    }

    /// The eval-mode network folded for the fused CPU path (f32 weights only).
    pub(crate) fn fused(&self, mean: &[f32], std: &[f32]) -> candle_core::Result<Option<FusedNet>> {
        if self.fc.weight().dtype() != candle_core::DType::F32 {
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
                        .map(|c| c.fused())
                        .collect::<candle_core::Result<_>>()?,
                    down: b.downsample.as_ref().map(|d| d.fused()).transpose()?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let fc_w = self.fc.weight().flatten_all()?.to_vec1::<f32>()?;
        let fc_b = match self.fc.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; self.config.num_classes],
        };
        Ok(Some(FusedNet {
            stem: self.stem.fused()?,
            maxpool: self.config.stem == Stem::Imagenet,
            blocks,
            fc_w,
            fc_b,
            mean: mean.to_vec(),
            std: std.to_vec(),
        }))
    }
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
