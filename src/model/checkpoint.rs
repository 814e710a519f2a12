//! Checkpoint files: `.safetensors` and PyTorch `.pth`/`.pt` state dicts (also
//! nested under `state_dict`/`model`, with or without DataParallel's `module.`
//! prefix), and the `NAME.json` sidecar with what a state dict cannot say.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads every tensor of a checkpoint as f32 (integer buffers such as
/// `num_batches_tracked` are dropped), names normalised.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let ckerr = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found"),
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let raw: Vec<(String, Tensor)> = match ext.as_str() {
        "safetensors" => candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| ckerr(format!("not a readable safetensors file: {e}")))?
            .into_iter()
            .collect(),
        "pth" | "pt" | "bin" | "ckpt" => read_pth(path)?,
        _ => {
            return Err(ckerr(format!(
                "unknown checkpoint extension '.{ext}' (expected .safetensors, .pth or .pt)"
            )))
        }
    };
    if raw.is_empty() {
        return Err(ckerr(
            "no tensors found (expected a state dict, possibly under 'state_dict' or 'model')"
                .into(),
        ));
    }
    let mut out = HashMap::new();
    for (name, t) in raw {
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        let name = name.strip_prefix("_orig_mod.").unwrap_or(&name).to_string();
        if !t.dtype().is_float() {
            continue;
        }
        let t = if t.dtype() == DType::F32 {
            t
        } else {
            t.to_dtype(DType::F32)?
        };
        out.insert(name, t);
    }
    Ok(out)
}

fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let ckerr = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let mut last_err = None;
    for key in [
        None,
        Some("state_dict"),
        Some("model"),
        Some("model_state_dict"),
        Some("net"),
    ] {
        match candle_core::pickle::read_all_with_key(path, key) {
            Ok(v) if !v.is_empty() => return Ok(v),
            Ok(_) => {}
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(ckerr(format!(
            "not a readable PyTorch checkpoint (torch.save zip format): {e}"
        ))),
        None => Ok(Vec::new()),
    }
}

/// Sidecar `NAME.json` next to a checkpoint: what the state dict cannot say,
/// and for semcon's own checkpoints how they were made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sidecar {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem: Option<super::resnet::Stem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    /// [height, width] images are resized to (image folders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<[usize; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

/// `dir/NAME.json` for `dir/NAME.ext`.
pub fn sidecar_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("json")
}

pub fn read_sidecar(checkpoint: &Path) -> Result<Option<Sidecar>> {
    let p = sidecar_path(checkpoint);
    if !p.is_file() {
        return Ok(None);
    }
    let s = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let sc = serde_json::from_str(&s)
        .map_err(|e| Error::format(&p, format!("invalid sidecar JSON: {e}")))?;
    Ok(Some(sc))
}
