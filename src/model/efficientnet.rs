//! torchvision's EfficientNet B0–B7 (and other widths and depths of the
//! same design) as a described network: a 3x3 stride-2 stem, stages of
//! MBConv blocks (1x1 expansion, depthwise kxk, squeeze-and-excitation,
//! 1x1 projection, residual where stride 1 and widths agree; SiLU
//! throughout), a 1x1 head convolution, pooling and the linear classifier.
//! Widths, depths, kernel sizes and expansion come from the shapes; the
//! stride of each stage and the BatchNorm eps from torchvision's
//! configuration of the variant the shapes match (B0–B4 eps 1e-5, B5–B7
//! 1e-3); for shapes no B0–B7 has, the sidecar's `stage_strides` (required)
//! and `bn_eps` (else torchvision's class default, 1e-5).
//! Convolutions pad `(k-1)/2` on every side, as torchvision's
//! `Conv2dNormActivation` (not TensorFlow's "same").
//! Taps: `stage1..stageN` (pooled), `penultimate` (pooled head
//! convolution, the classifier's input), `logits`.

use super::checkpoint::{sidecar_path, Sidecar};
use super::described::{count, need, set, LayerNet, Source, Weights};
use super::layers::{Act, Op};
use super::tap::Tap;
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// Whether a state dict looks like a torchvision EfficientNet (B0–B7).
pub fn recognise(shapes: &HashMap<String, Vec<usize>>) -> bool {
    shapes.contains_key("features.0.0.weight") && shapes.contains_key("classifier.1.weight")
}

/// torchvision's B0 stages: (expand ratio, kernel, stride, in, out, blocks).
const BASE: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// (name, width multiplier, depth multiplier, BatchNorm eps).
const VARIANTS: [(&str, f64, f64, f64); 8] = [
    ("efficientnet_b0", 1.0, 1.0, 1e-5),
    ("efficientnet_b1", 1.0, 1.1, 1e-5),
    ("efficientnet_b2", 1.1, 1.2, 1e-5),
    ("efficientnet_b3", 1.2, 1.4, 1e-5),
    ("efficientnet_b4", 1.4, 1.8, 1e-5),
    ("efficientnet_b5", 1.6, 2.2, 1e-3),
    ("efficientnet_b6", 1.8, 2.6, 1e-3),
    ("efficientnet_b7", 2.0, 3.1, 1e-3),
];

/// torchvision's `_make_divisible(v, 8)`.
fn divisible(v: f64) -> usize {
    let d: f64 = 8.0;
    let mut n = d.max(((v + d / 2.0) / d).floor() * d);
    if n < 0.9 * v {
        n += d;
    }
    n as usize
}

/// The shape of one variant: stem width, each stage's (out width, blocks),
/// head width.
type Shape = (usize, Vec<(usize, usize)>, usize);

fn variant_shape(wm: f64, dm: f64) -> Shape {
    let stem = divisible(32.0 * wm);
    let stages: Vec<(usize, usize)> = BASE
        .iter()
        .map(|b| {
            (
                divisible(b.4 as f64 * wm),
                (b.5 as f64 * dm).ceil() as usize,
            )
        })
        .collect();
    let head = 4 * stages.last().expect("7 stages").0;
    (stem, stages, head)
}

/// One MBConv block as read from the shapes.
struct Block {
    prefix: String,
    cin: usize,
    exp: usize,
    out: usize,
    k: usize,
    squeeze: usize,
    expand: bool,
}

fn read_block(shapes: &HashMap<String, Vec<usize>>, prefix: String, path: &Path) -> Result<Block> {
    let fam = "EfficientNet";
    let expand = shapes.contains_key(&format!("{prefix}.block.3.0.weight"));
    let (dwi, sei, pri) = if expand { (1, 2, 3) } else { (0, 1, 2) };
    let dw = need(
        shapes,
        &format!("{prefix}.block.{dwi}.0.weight"),
        4,
        fam,
        path,
    )?;
    let (exp, k) = (dw[0], dw[2]);
    let cin = if expand {
        need(shapes, &format!("{prefix}.block.0.0.weight"), 4, fam, path)?[1]
    } else {
        exp
    };
    let squeeze = need(
        shapes,
        &format!("{prefix}.block.{sei}.fc1.weight"),
        4,
        fam,
        path,
    )?[0];
    let out = need(
        shapes,
        &format!("{prefix}.block.{pri}.0.weight"),
        4,
        fam,
        path,
    )?[0];
    Ok(Block {
        prefix,
        cin,
        exp,
        out,
        k,
        squeeze,
        expand,
    })
}

/// Builds the network from a state dict (wrapper prefixes stripped).
pub fn build(
    tensors: &HashMap<String, Tensor>,
    shapes: &HashMap<String, Vec<usize>>,
    sidecar: &Sidecar,
    path: &Path,
) -> Result<LayerNet> {
    let err = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let fam = "EfficientNet";
    let stem = need(shapes, "features.0.0.weight", 4, fam, path)?;
    let (c0, cin) = (stem[0], stem[1]);
    let nstages = count(shapes, |i| format!("features.{}.0.block.0.0.weight", i + 1));
    if nstages == 0 {
        return Err(err(
            "missing tensor 'features.1.0.block.0.0.weight': an EfficientNet needs at least one \
             stage of MBConv blocks"
                .into(),
        ));
    }
    if nstages > 255 {
        return Err(err(format!("{nstages} stages: semcon taps at most 255")));
    }
    let mut stages: Vec<Vec<Block>> = Vec::new();
    for s in 1..=nstages {
        let n = count(shapes, |j| format!("features.{s}.{j}.block.0.0.weight"));
        stages.push(
            (0..n)
                .map(|j| read_block(shapes, format!("features.{s}.{j}"), path))
                .collect::<Result<_>>()?,
        );
    }
    let head_name = format!("features.{}.0.weight", nstages + 1);
    let head = need(shapes, &head_name, 4, fam, path)?;
    let last = head[0];
    let classes = need(shapes, "classifier.1.weight", 2, fam, path)?[0];
    let found: Shape = (
        c0,
        stages
            .iter()
            .map(|b| (b.last().map_or(0, |b| b.out), b.len()))
            .collect(),
        last,
    );
    let known = VARIANTS.iter().find(|v| variant_shape(v.1, v.2) == found);
    let sc = sidecar_path(path);
    let mut settings = vec![
        set(
            "stage widths",
            format!("{:?}", found.1.iter().map(|s| s.0).collect::<Vec<_>>()),
            Source::StateDict,
        ),
        set(
            "stage depths",
            format!("{:?}", found.1.iter().map(|s| s.1).collect::<Vec<_>>()),
            Source::StateDict,
        ),
    ];
    let strides: Vec<usize> = match &sidecar.stage_strides {
        Some(v) => {
            settings.push(set("stage strides", format!("{v:?}"), Source::Sidecar));
            v.clone()
        }
        None if known.is_some() => {
            let v: Vec<usize> = BASE.iter().map(|b| b.2).collect();
            settings.push(set("stage strides", format!("{v:?}"), Source::Torchvision));
            v
        }
        None => {
            return Err(err(format!(
                "an EfficientNet whose widths and depths match no torchvision B0-B7 (stem {c0}, \
                 stages (width, blocks) {:?}): the stride of each of its {nstages} stages cannot \
                 be inferred; give them as \"stage_strides\" in the sidecar {}",
                found.1,
                sc.display()
            )))
        }
    };
    if strides.len() != nstages || strides.contains(&0) {
        return Err(err(format!(
            "sidecar stage_strides {strides:?} must give {nstages} strides of at least 1"
        )));
    }
    let eps = match (sidecar.bn_eps, known) {
        (Some(e), _) if e > 0.0 && e.is_finite() => {
            settings.push(set("BatchNorm eps", format!("{e:e}"), Source::Sidecar));
            e
        }
        (Some(e), _) => {
            return Err(err(format!("sidecar bn_eps {e} must be a positive number")));
        }
        (None, Some(v)) => {
            settings.push(set(
                "BatchNorm eps",
                format!("{:e}", v.3),
                Source::Torchvision,
            ));
            v.3
        }
        (None, None) => {
            settings.push(set("BatchNorm eps", "1e-5".into(), Source::Default));
            1e-5
        }
    };
    let arch = match known {
        Some(v) => v.0.to_string(),
        None => format!(
            "efficientnet (stem {c0}, stages {:?}, head {last})",
            found.1
        ),
    };
    let mut wt = Weights::new(
        tensors,
        path,
        format!("the {arch} inferred from this checkpoint"),
    );
    let mut ops = vec![
        wt.conv_bn("features.0.0", "features.0.1", (c0, cin, 3), (2, 1), eps)?,
        Op::Act(Act::Silu),
    ];
    let mut taps = Vec::new();
    let mut width = c0;
    for (s, blocks) in stages.iter().enumerate() {
        for (j, b) in blocks.iter().enumerate() {
            if b.cin != width {
                return Err(err(format!(
                    "block {} takes {} channels but the layer before it gives {width}",
                    b.prefix, b.cin
                )));
            }
            let stride = if j == 0 { strides[s] } else { 1 };
            let p = &b.prefix;
            let mut body = Vec::new();
            let mut i = 0;
            if b.expand {
                body.push(wt.conv_bn(
                    &format!("{p}.block.0.0"),
                    &format!("{p}.block.0.1"),
                    (b.exp, b.cin, 1),
                    (1, 1),
                    eps,
                )?);
                body.push(Op::Act(Act::Silu));
                i = 1;
            }
            body.push(wt.conv_bn(
                &format!("{p}.block.{i}.0"),
                &format!("{p}.block.{i}.1"),
                (b.exp, b.exp, b.k),
                (stride, b.exp),
                eps,
            )?);
            body.push(Op::Act(Act::Silu));
            let se = format!("{p}.block.{}", i + 1);
            let w1 = wt.get(&format!("{se}.fc1.weight"), &[b.squeeze, b.exp, 1, 1])?;
            let b1 = wt.get(&format!("{se}.fc1.bias"), &[b.squeeze])?;
            let w2 = wt.get(&format!("{se}.fc2.weight"), &[b.exp, b.squeeze, 1, 1])?;
            let b2 = wt.get(&format!("{se}.fc2.bias"), &[b.exp])?;
            body.push(Op::SqueezeExcite {
                w1: w1.reshape((b.squeeze, b.exp))?,
                b1,
                w2: w2.reshape((b.exp, b.squeeze))?,
                b2,
                act: Act::Silu,
            });
            body.push(wt.conv_bn(
                &format!("{p}.block.{}.0", i + 2),
                &format!("{p}.block.{}.1", i + 2),
                (b.out, b.exp, 1),
                (1, 1),
                eps,
            )?);
            if stride == 1 && b.cin == b.out {
                ops.push(Op::Residual { body });
            } else {
                ops.extend(body);
            }
            width = b.out;
        }
        let t = Tap::Stage(s as u8 + 1);
        ops.push(Op::Tap(t));
        taps.push((t, width, format!("features.{} (pooled)", s + 1)));
    }
    let h = nstages + 1;
    ops.push(wt.conv_bn(
        &format!("features.{h}.0"),
        &format!("features.{h}.1"),
        (last, width, 1),
        (1, 1),
        eps,
    )?);
    ops.push(Op::Act(Act::Silu));
    ops.push(Op::Pool);
    ops.push(Op::Tap(Tap::Penultimate));
    taps.push((
        Tap::Penultimate,
        last,
        "classifier.1's input (pooled)".into(),
    ));
    let (w, b) = wt.linear("classifier.1", classes, last)?;
    ops.push(Op::Linear { w, b });
    taps.push((Tap::Logits, classes, "classifier.1".into()));
    Ok(LayerNet {
        family: "EfficientNet",
        arch,
        in_channels: cin,
        num_classes: classes,
        image_size: None,
        taps,
        settings,
        params: wt.params,
        ops,
    })
}
