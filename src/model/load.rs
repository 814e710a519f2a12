//! Loading a checkpoint into a [`Model`]: read the state dict, recognise
//! the family (ViT, ConvNeXt, EfficientNet, else the ResNet family) and
//! infer the architecture from its keys and shapes, check every tensor, and settle the
//! settings a state dict cannot hold (normalisation, input size, class
//! names) from flags, then the sidecar, then defaults.

use super::checkpoint::{read_sidecar, read_state_dict, sidecar_path};
use super::classifier::Model;
use super::described::LayerNet;
use super::norm::norm_values;
use super::resnet::{ResNet, ResNetConfig};
use super::{convnext, efficientnet, vit};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::Path;

/// What the user may state about a model beyond its state dict (flags).
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    pub input_size: Option<(usize, usize)>,
    pub class_names: Option<Vec<String>>,
}

/// [`load`], with the checkpoint named in the error when the error does not
/// already name it.
pub fn load_named(path: &Path, opts: &ModelOptions, device: &Device) -> anyhow::Result<Model> {
    load(path, opts, device).map_err(|e| {
        let shown = path.display().to_string();
        if e.to_string().contains(&shown) {
            anyhow::Error::from(e)
        } else {
            anyhow::Error::from(e).context(format!("cannot load checkpoint {shown}"))
        }
    })
}

/// Loads a checkpoint, infers the architecture, checks every tensor's shape.
pub fn load(path: &Path, opts: &ModelOptions, device: &Device) -> Result<Model> {
    let tensors = read_state_dict(path)?;
    let sidecar = read_sidecar(path)?.unwrap_or_default();
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    let layers = build_described(&tensors, &sidecar, path)?;
    let (net, c, classes) = match layers {
        Some(l) => {
            let (c, k) = (l.in_channels, l.num_classes);
            (Err(l), c, k)
        }
        None => {
            let config = ResNetConfig::infer(&shapes, path)?;
            check_shapes(&config, &shapes, path)?;
            check_values(&config, &tensors, path)?;
            let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
            let (c, k) = (config.in_channels, config.num_classes);
            (Ok(ResNet::new(&config, vb)?), c, k)
        }
    };
    // Flags win over the sidecar; errors name whichever gave the value.
    let sc = sidecar_path(path);
    let source = |flag: bool, field: &str| {
        if flag {
            format!("--{}", field.replace('_', "-"))
        } else {
            format!("sidecar {}: {field}", sc.display())
        }
    };
    let mean = match opts.mean.as_ref().or(sidecar.mean.as_ref()) {
        Some(v) => norm_values(v, c, &source(opts.mean.is_some(), "mean"), false)?,
        None => vec![0.0; c],
    };
    let std = match opts.std.as_ref().or(sidecar.std.as_ref()) {
        Some(v) => norm_values(v, c, &source(opts.std.is_some(), "std"), true)?,
        None => vec![1.0; c],
    };
    let fixed = net.as_ref().err().and_then(|l| l.image_size);
    let mut m = match net {
        Ok(r) => Model::from_net(r, path.to_path_buf(), mean, std, device)?,
        Err(l) => {
            let l = l.to_device(device)?;
            Model::from_layers(l, path.to_path_buf(), mean, std, device)?
        }
    };
    m.input_size = opts.input_size.or(sidecar.input_size.map(|[h, w]| (h, w)));
    if let Some(s) = fixed {
        match m.input_size {
            Some((h, w)) if (h, w) != (s, s) => {
                return Err(crate::invalid!(
                    "{} is {h}x{w} but {} ({}) takes {s}x{s} images only: its position \
                     embedding fits {s}x{s}",
                    source(opts.input_size.is_some(), "input_size"),
                    path.display(),
                    m.arch_name()
                ))
            }
            _ => m.input_size = Some((s, s)),
        }
    }
    if let Some((h, w)) = m.input_size {
        let given = source(opts.input_size.is_some(), "input_size");
        if h == 0 || w == 0 {
            return Err(crate::invalid!(
                "{given} is {h}x{w}: both sides must be at least 1"
            ));
        }
        // Every image is resized to it: no larger than an image may be.
        let max = crate::data::folder::MAX_PIXELS;
        if (h as u64).saturating_mul(w as u64) > max
            || h > u32::MAX as usize
            || w > u32::MAX as usize
        {
            return Err(crate::invalid!(
                "{given} is {h}x{w}: more than the {max} pixels an image may have"
            ));
        }
    }
    // Loaded weights never change: the fused forms can be kept.
    m = m.with_frozen_weights();
    m.class_names = opts.class_names.clone().or(sidecar.class_names.clone());
    if let Some(names) = &m.class_names {
        if names.len() != classes {
            let given = if opts.class_names.is_some() {
                format!("{} class names given", names.len())
            } else {
                format!("{} has {} names", source(false, "class_names"), names.len())
            };
            return Err(crate::invalid!(
                "{given} but checkpoint {} has {} outputs",
                path.display(),
                classes
            ));
        }
    }
    m.norm_defaulted = opts.mean.is_none()
        && opts.std.is_none()
        && sidecar.mean.is_none()
        && sidecar.std.is_none();
    m.sidecar = sidecar;
    Ok(m)
}

/// The network of a ViT, ConvNeXt or EfficientNet state dict (`None`
/// for any other: the ResNet family is tried next), every tensor checked.
pub fn build_described(
    tensors: &HashMap<String, Tensor>,
    sidecar: &super::checkpoint::Sidecar,
    path: &Path,
) -> Result<Option<LayerNet>> {
    let shapes: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    Ok(if vit::recognise(&shapes) {
        Some(vit::build(tensors, &shapes, sidecar, path)?)
    } else if convnext::recognise(&shapes) {
        Some(convnext::build(tensors, &shapes, path)?)
    } else if efficientnet::recognise(&shapes) {
        Some(efficientnet::build(tensors, &shapes, sidecar, path)?)
    } else {
        None
    })
}

/// Rejects weights that would silently give constant or NaN outputs:
/// NaN/Inf values anywhere, negative BatchNorm running variances.
pub(crate) fn check_values(
    config: &ResNetConfig,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let err = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    for (name, _) in config.expected_shapes() {
        let Some(t) = tensors.get(&name) else {
            continue;
        };
        let v: Vec<f32> = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(err(format!("tensor '{name}' holds NaN/Inf values")));
        }
        if name.ends_with(".running_var") && v.iter().any(|x| *x < 0.0) {
            return Err(err(format!(
                "tensor '{name}' holds negative values (a BatchNorm running variance is >= 0)"
            )));
        }
    }
    Ok(())
}

fn check_shapes(
    config: &ResNetConfig,
    shapes: &HashMap<String, Vec<usize>>,
    path: &Path,
) -> Result<()> {
    for (name, want) in config.expected_shapes() {
        match shapes.get(&name) {
            None => {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!(
                        "missing tensor '{name}' (expected shape {want:?} for a {} with {} stem)",
                        config.arch_name(),
                        format!("{:?}", config.stem).to_lowercase()
                    ),
                })
            }
            Some(got) if got != &want => {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!(
                        "tensor '{name}' has shape {got:?} but the {} inferred from this checkpoint needs {want:?}",
                        config.arch_name()
                    ),
                })
            }
            _ => {}
        }
    }
    Ok(())
}
