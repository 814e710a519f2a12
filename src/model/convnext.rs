//! torchvision's ConvNeXt (`convnext_tiny`, `_small`, `_base`, `_large`,
//! and any other stage widths and depths) as a described network: a 4x4
//! stride-4 patchify stem with LayerNorm2d, stages of CNBlocks (depthwise
//! 7x7, channel LayerNorm, 1x1 expansion x4, GELU, 1x1 projection, layer
//! scale, residual) separated by LayerNorm2d + 2x2 stride-2 downsampling,
//! then global pooling, LayerNorm and the linear head. All widths and
//! depths come from the shapes; every LayerNorm has torchvision's eps 1e-6.
//! Taps: `stage1..stageN` (each stage's output, pooled), `penultimate`
//! (the pooled, normalised features the head reads), `logits`.

use super::described::{count, need, set, LayerNet, Source, Weights};
use super::layers::{Act, Op};
use super::tap::Tap;
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

const LN_EPS: f64 = 1e-6;

/// Whether a state dict looks like a torchvision ConvNeXt.
pub fn recognise(shapes: &HashMap<String, Vec<usize>>) -> bool {
    shapes.contains_key("features.0.0.weight") && shapes.contains_key("classifier.2.weight")
}

/// torchvision's variants: (name, widths, depths).
const VARIANTS: [(&str, [usize; 4], [usize; 4]); 4] = [
    ("convnext_tiny", [96, 192, 384, 768], [3, 3, 9, 3]),
    ("convnext_small", [96, 192, 384, 768], [3, 3, 27, 3]),
    ("convnext_base", [128, 256, 512, 1024], [3, 3, 27, 3]),
    ("convnext_large", [192, 384, 768, 1536], [3, 3, 27, 3]),
];

/// Builds the network from a state dict (wrapper prefixes stripped).
pub fn build(
    tensors: &HashMap<String, Tensor>,
    shapes: &HashMap<String, Vec<usize>>,
    path: &Path,
) -> Result<LayerNet> {
    let err = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let fam = "ConvNeXt";
    let stem = need(shapes, "features.0.0.weight", 4, fam, path)?;
    let (c0, cin, ks) = (stem[0], stem[1], stem[2]);
    let stages = count(shapes, |i| {
        format!("features.{}.0.block.0.weight", 2 * i + 1)
    });
    if stages == 0 {
        return Err(err(
            "missing tensor 'features.1.0.block.0.weight': a ConvNeXt needs at least one stage"
                .into(),
        ));
    }
    if stages > 255 {
        return Err(err(format!("{stages} stages: semcon taps at most 255")));
    }
    let mut widths = Vec::new();
    let mut depths = Vec::new();
    for s in 0..stages {
        let f = 2 * s + 1;
        let dw = need(
            shapes,
            &format!("features.{f}.0.block.0.weight"),
            4,
            fam,
            path,
        )?;
        widths.push(dw[0]);
        depths.push(count(shapes, |j| {
            format!("features.{f}.{j}.block.0.weight")
        }));
    }
    let last = *widths.last().expect("a stage");
    let head = need(shapes, "classifier.2.weight", 2, fam, path)?;
    let classes = head[0];
    let known = VARIANTS
        .iter()
        .find(|v| v.1[..] == widths[..] && v.2[..] == depths[..]);
    let arch = match known {
        Some(v) => v.0.to_string(),
        None => format!("convnext (widths {widths:?}, depths {depths:?})"),
    };
    let settings = vec![
        set("stage widths", format!("{widths:?}"), Source::StateDict),
        set("stage depths", format!("{depths:?}"), Source::StateDict),
        set(
            "stem",
            format!("{ks}x{ks} stride {ks}, {c0} channels"),
            Source::StateDict,
        ),
        set("LayerNorm eps", "1e-6".into(), Source::Torchvision),
    ];
    if c0 != widths[0] {
        return Err(err(format!(
            "tensor 'features.0.0.weight' has shape {stem:?} but the first stage has {} channels",
            widths[0]
        )));
    }
    let mut wt = Weights::new(
        tensors,
        path,
        format!("the {arch} inferred from this checkpoint"),
    );
    let (w, b) = wt.linear_bias_conv("features.0.0", c0, cin, ks)?;
    let mut ops = vec![Op::Conv {
        w,
        b: Some(b),
        stride: ks,
        pad: 0,
        groups: 1,
    }];
    let (w, b) = wt.norm("features.0.1", c0)?;
    ops.push(Op::LayerNorm2d { w, b, eps: LN_EPS });
    let mut taps = Vec::new();
    for s in 0..stages {
        let (f, c) = (2 * s + 1, widths[s]);
        if s > 0 {
            let prev = widths[s - 1];
            let (w, b) = wt.norm(&format!("features.{}.0", f - 1), prev)?;
            ops.push(Op::LayerNorm2d { w, b, eps: LN_EPS });
            let (w, b) = wt.linear_bias_conv(&format!("features.{}.1", f - 1), c, prev, 2)?;
            ops.push(Op::Conv {
                w,
                b: Some(b),
                stride: 2,
                pad: 0,
                groups: 1,
            });
        }
        for j in 0..depths[s] {
            let p = format!("features.{f}.{j}");
            let (dw, dwb) = wt.linear_bias_conv(&format!("{p}.block.0"), c, 1, 7)?;
            let (lw, lb) = wt.norm(&format!("{p}.block.2"), c)?;
            let (w1, b1) = wt.linear(&format!("{p}.block.3"), 4 * c, c)?;
            let (w2, b2) = wt.linear(&format!("{p}.block.5"), c, 4 * c)?;
            // The layer scale folded into the projection:
            // s * (W2 h + b2) = (s W2) h + s b2.
            let scale = wt
                .get(&format!("{p}.layer_scale"), &[c, 1, 1])?
                .flatten_all()?;
            let w2 = w2.broadcast_mul(&scale.reshape((c, 1))?)?;
            let b2 = (b2 * &scale)?;
            let pointwise = |w: Tensor, b: Tensor| -> Result<Op> {
                let (o, i) = w.dims2()?;
                Ok(Op::Conv {
                    w: w.reshape((o, i, 1, 1))?,
                    b: Some(b),
                    stride: 1,
                    pad: 0,
                    groups: 1,
                })
            };
            ops.push(Op::Residual {
                body: vec![
                    Op::Conv {
                        w: dw,
                        b: Some(dwb),
                        stride: 1,
                        pad: 3,
                        groups: c,
                    },
                    Op::LayerNorm2d {
                        w: lw,
                        b: lb,
                        eps: LN_EPS,
                    },
                    pointwise(w1, b1)?,
                    Op::Act(Act::Gelu),
                    pointwise(w2, b2)?,
                ],
            });
        }
        let t = Tap::Stage(s as u8 + 1);
        ops.push(Op::Tap(t));
        taps.push((t, c, format!("features.{f} (pooled)")));
    }
    ops.push(Op::Pool);
    let (w, b) = wt.norm("classifier.0", last)?;
    ops.push(Op::LayerNorm { w, b, eps: LN_EPS });
    ops.push(Op::Tap(Tap::Penultimate));
    taps.push((Tap::Penultimate, last, "classifier.2's input".into()));
    let (w, b) = wt.linear("classifier.2", classes, last)?;
    ops.push(Op::Linear { w, b });
    taps.push((Tap::Logits, classes, "classifier.2".into()));
    Ok(LayerNet {
        family: "ConvNeXt",
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
