//! torchvision's Vision Transformer (`vit_b_16`, `vit_b_32`, `vit_l_16`,
//! `vit_l_32`, `vit_h_14` and any other size) as a described network:
//! patch size, hidden size, depth, MLP size and image size from the state
//! dict's shapes; the head count from torchvision's configurations (12 for
//! hidden size 768, 16 for 1024 and 1280), otherwise from the sidecar's
//! `num_heads`. Both MLP spellings load (`mlp.0`/`mlp.3`, and the
//! `mlp.linear_1`/`mlp.linear_2` of torchvision's released files).
//! Taps: `block1..blockN` (the class token after each encoder block),
//! `penultimate` (the class token after the final LayerNorm, the head's
//! input), `logits`.

use super::checkpoint::Sidecar;
use super::described::{count, need, set, shape, LayerNet, Source, Weights};
use super::layers::{Act, Op};
use super::tap::Tap;
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// torchvision's LayerNorm eps in every ViT.
const LN_EPS: f64 = 1e-6;

/// Whether a state dict looks like a torchvision ViT.
pub fn recognise(shapes: &HashMap<String, Vec<usize>>) -> bool {
    shapes.contains_key("conv_proj.weight")
}

/// torchvision's variants: (name, patch, hidden, layers, mlp, heads, image).
const VARIANTS: [(&str, usize, usize, usize, usize, usize, usize); 5] = [
    ("vit_b_16", 16, 768, 12, 3072, 12, 224),
    ("vit_b_32", 32, 768, 12, 3072, 12, 224),
    ("vit_l_16", 16, 1024, 24, 4096, 16, 224),
    ("vit_l_32", 32, 1024, 24, 4096, 16, 224),
    ("vit_h_14", 14, 1280, 32, 5120, 16, 224),
];

fn layer(i: usize) -> String {
    format!("encoder.layers.encoder_layer_{i}")
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
    let fam = "Vision Transformer";
    let proj = need(shapes, "conv_proj.weight", 4, fam, path)?;
    let (d, c, p) = (proj[0], proj[1], proj[2]);
    if proj[3] != p {
        return Err(err(format!(
            "tensor 'conv_proj.weight' has shape {proj:?}: patches must be square"
        )));
    }
    let pos = need(shapes, "encoder.pos_embedding", 3, fam, path)?;
    let seq = pos[1];
    let patches = seq - 1;
    let side = (patches as f64).sqrt().round() as usize;
    if patches == 0 || side * side != patches || pos[0] != 1 || pos[2] != d {
        return Err(err(format!(
            "tensor 'encoder.pos_embedding' has shape {pos:?}: a ViT with hidden size {d} \
             needs [1, 1 + n*n, {d}] (a class token and a square grid of patches)"
        )));
    }
    let image = side * p;
    let depth = count(shapes, |i| format!("{}.ln_1.weight", layer(i)));
    if depth == 0 {
        return Err(err(format!(
            "missing tensor '{}.ln_1.weight': a ViT needs at least one encoder block",
            layer(0)
        )));
    }
    let old_mlp = shapes.contains_key(&format!("{}.mlp.linear_1.weight", layer(0)));
    let (mlp1, mlp2) = if old_mlp {
        ("mlp.linear_1", "mlp.linear_2")
    } else {
        ("mlp.0", "mlp.3")
    };
    let mlp = need(shapes, &format!("{}.{mlp1}.weight", layer(0)), 2, fam, path)?[0];
    let pre_logits = shape(shapes, "heads.pre_logits.weight").map(|s| s.to_vec());
    let head_in = pre_logits.as_ref().map_or(d, |s| s[0]);
    let head = need(shapes, "heads.head.weight", 2, fam, path)?;
    let classes = head[0];
    let mut settings = vec![
        set("patch size", format!("{p}"), Source::StateDict),
        set("hidden size", format!("{d}"), Source::StateDict),
        set("encoder blocks", format!("{depth}"), Source::StateDict),
        set("MLP size", format!("{mlp}"), Source::StateDict),
        set("image size", format!("{image}x{image}"), Source::StateDict),
    ];
    let known = VARIANTS
        .iter()
        .find(|v| (v.1, v.2, v.3, v.4, v.6) == (p, d, depth, mlp, image));
    let heads = match (sidecar.num_heads, d) {
        (Some(h), _) => {
            settings.push(set("attention heads", h.to_string(), Source::Sidecar));
            h
        }
        (None, 768) => {
            settings.push(set("attention heads", "12".into(), Source::Torchvision));
            12
        }
        (None, 1024 | 1280) => {
            settings.push(set("attention heads", "16".into(), Source::Torchvision));
            16
        }
        (None, _) => {
            return Err(err(format!(
                "the number of attention heads of a ViT with hidden size {d} cannot be inferred \
                 (torchvision's sizes 768, 1024, 1280 have 12, 16, 16): give it as \"num_heads\" in \
                 the sidecar {}",
                super::checkpoint::sidecar_path(path).display()
            )))
        }
    };
    if heads == 0 || d % heads != 0 {
        return Err(err(format!(
            "sidecar num_heads {heads} does not divide the hidden size {d}"
        )));
    }
    let arch = match known {
        Some(v) if v.5 == heads => v.0.to_string(),
        _ => format!(
            "vit (patch {p}, {depth} blocks, hidden {d}, {heads} heads, MLP {mlp}, {image} px)"
        ),
    };
    let mut wt = Weights::new(
        tensors,
        path,
        format!("the {arch} inferred from this checkpoint"),
    );
    let mut ops = vec![
        Op::Conv {
            w: wt.get("conv_proj.weight", &[d, c, p, p])?,
            b: Some(wt.get("conv_proj.bias", &[d])?),
            stride: p,
            pad: 0,
            groups: 1,
        },
        Op::Tokens {
            class_token: wt.get("class_token", &[1, 1, d])?,
            pos: wt.get("encoder.pos_embedding", &[1, seq, d])?,
        },
    ];
    let mut taps = Vec::new();
    for i in 0..depth {
        let l = layer(i);
        let (w1, b1) = wt.norm(&format!("{l}.ln_1"), d)?;
        let a = format!("{l}.self_attention");
        let in_w = wt.get(&format!("{a}.in_proj_weight"), &[3 * d, d])?;
        let in_b = wt.get(&format!("{a}.in_proj_bias"), &[3 * d])?;
        let (out_w, out_b) = wt.linear(&format!("{a}.out_proj"), d, d)?;
        ops.push(Op::Residual {
            body: vec![
                Op::LayerNorm {
                    w: w1,
                    b: b1,
                    eps: LN_EPS,
                },
                Op::Attention {
                    in_w,
                    in_b,
                    out_w,
                    out_b,
                    heads,
                },
            ],
        });
        let (w2, b2) = wt.norm(&format!("{l}.ln_2"), d)?;
        let (m1w, m1b) = wt.linear(&format!("{l}.{mlp1}"), mlp, d)?;
        let (m2w, m2b) = wt.linear(&format!("{l}.{mlp2}"), d, mlp)?;
        ops.push(Op::Residual {
            body: vec![
                Op::LayerNorm {
                    w: w2,
                    b: b2,
                    eps: LN_EPS,
                },
                Op::Linear { w: m1w, b: m1b },
                Op::Act(Act::Gelu),
                Op::Linear { w: m2w, b: m2b },
            ],
        });
        let t = Tap::Block(
            u8::try_from(i + 1)
                .map_err(|_| err(format!("{depth} encoder blocks: semcon taps at most 255")))?,
        );
        ops.push(Op::Tap(t));
        taps.push((t, d, format!("{l} (class token)")));
    }
    let (w, b) = wt.norm("encoder.ln", d)?;
    ops.push(Op::LayerNorm { w, b, eps: LN_EPS });
    ops.push(Op::ClassToken);
    if pre_logits.is_some() {
        let (w, b) = wt.linear("heads.pre_logits", head_in, d)?;
        ops.push(Op::Linear { w, b });
        ops.push(Op::Act(Act::Tanh));
    }
    ops.push(Op::Tap(Tap::Penultimate));
    taps.push((
        Tap::Penultimate,
        head_in,
        "heads.head's input (class token)".into(),
    ));
    let (w, b) = wt.linear("heads.head", classes, head_in)?;
    ops.push(Op::Linear { w, b });
    taps.push((Tap::Logits, classes, "heads.head".into()));
    Ok(LayerNet {
        family: "ViT",
        arch,
        in_channels: c,
        num_classes: classes,
        image_size: Some(image),
        taps,
        settings,
        params: wt.params,
        ops,
    })
}
