//! Checkpoint files: `.safetensors` and PyTorch `.pth`/`.pt`/`.ckpt` state
//! dicts (also nested under `state_dict`/`model`, with or without a wrapper's
//! prefix: DataParallel's `module.`, torch.compile's `_orig_mod.`, PyTorch
//! Lightning's `model.`), and the `NAME.json` sidecar with what a state dict
//! cannot say.

use super::keys::wrapper_prefix;
use super::pickle_scan;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads every tensor of a checkpoint as f32 (integer buffers such as
/// `num_batches_tracked` are dropped), names normalised.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, t) in read_raw(path)? {
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

/// The BatchNorm counters (`*.num_batches_tracked`, integer scalars) of a
/// `.safetensors` checkpoint, names normalised; none for a `.pth` (its
/// reader skips integer tensors), so a fine-tuned copy counts from 0.
pub fn read_batches_tracked(path: &Path) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for (name, t) in read_raw(path)? {
        if name.ends_with(".num_batches_tracked") && t.dtype() == DType::I64 && t.elem_count() == 1
        {
            out.insert(name, t.flatten_all()?.to_vec1::<i64>()?[0]);
        }
    }
    Ok(out)
}

/// Every tensor of a checkpoint as stored, the wrapper prefix stripped.
fn read_raw(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let ckerr = |msg: String| Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    if !path.is_file() {
        let (kind, msg) = if path.is_dir() {
            (
                std::io::ErrorKind::InvalidInput,
                "is a directory, not a checkpoint file (pass the .safetensors/.pth inside)",
            )
        } else if path.exists() {
            (std::io::ErrorKind::InvalidInput, "not a regular file")
        } else {
            (std::io::ErrorKind::NotFound, "checkpoint not found")
        };
        return Err(Error::io(path, std::io::Error::new(kind, msg)));
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
                "unknown checkpoint extension '.{ext}' (expected .safetensors, .pth, .pt, .ckpt or .bin)"
            )))
        }
    };
    if raw.is_empty() {
        if ext != "safetensors" && holds_pickled_module(path) {
            return Err(ckerr(PICKLED_MODULE.into()));
        }
        return Err(ckerr(
            "no tensors found (expected a state dict, possibly under 'state_dict' or 'model')"
                .into(),
        ));
    }
    // One prefix of wrappers is stripped ([`wrapper_prefix`]).
    let prefix = wrapper_prefix(raw.iter().map(|(k, _)| k.as_str()));
    Ok(raw
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix(prefix.as_str())?.to_string(), t)))
        .collect())
}

/// What to do with `torch.save(model)`.
const PICKLED_MODULE: &str = "holds a pickled model object (torch.save(model)), not a state dict: \
save its weights with torch.save(model.state_dict(), 'model.pth')";

/// Whether a torch.save file pickles nn.Module objects (torch.save(model)).
fn holds_pickled_module(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.windows(16).any(|w| w == b"torch.nn.modules"))
}

fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    // torch.save before PyTorch 1.6 (or with _use_new_zipfile_serialization=
    // False) writes a bare pickle stream, not a zip archive.
    if crate::data::is_pickle(path) {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            msg: "legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False), \
                  which semcon does not read: re-save it with a current PyTorch, \
                  torch.save(torch.load('old.pth'), 'new.pth')"
                .into(),
        });
    }
    match read_pth_keys(path, path) {
        Ok(v) => Ok(v),
        Err(first) => {
            // The zip reader used by candle misreads some valid torch.save files
            // (see `zip32_copy`); retry on a copy without the zip64 end records.
            match zip32_copy(path) {
                Ok(Some(tmp)) => {
                    let r = read_pth_keys(&tmp, path);
                    let _ = std::fs::remove_file(&tmp);
                    r.map_err(|_| first)
                }
                _ => Err(first),
            }
        }
    }
}

/// Reads the state dict of `file` (a torch.save zip), trying the usual nesting
/// keys first (so candle does not print a line for every non-tensor entry of a
/// training checkpoint), then the top level. Errors name `shown`.
fn read_pth_keys(file: &Path, shown: &Path) -> Result<Vec<(String, Tensor)>> {
    check_pickle(file, shown)?;
    super::pth::read(file, &["state_dict", "model", "model_state_dict", "net"]).map_err(|e| {
        Error::Checkpoint {
            path: shown.to_path_buf(),
            msg: format!("not a readable PyTorch checkpoint (torch.save zip format): {e}"),
        }
    })
}

/// Refuses a torch.save archive whose pickle names anything a state dict
/// does not need ([`pickle_scan::allowed`]), before it is unpickled.
fn check_pickle(file: &Path, shown: &Path) -> Result<()> {
    let Some(pickle) = pickle_scan::data_pkl(file) else {
        return Ok(()); // not readable as a zip here: the reader reports it
    };
    let refuse = |msg: String| {
        Err(Error::Checkpoint {
            path: shown.to_path_buf(),
            msg,
        })
    };
    match pickle_scan::first_disallowed(&pickle) {
        Ok(None) => Ok(()),
        Ok(Some(global)) if holds_pickled_module(shown) => {
            refuse(format!("{PICKLED_MODULE} (its pickle calls {global})"))
        }
        Ok(Some(global)) => refuse(format!(
            "its pickle calls {global}, which a state dict never needs; refused without \
             running it (only torch's tensor-rebuilding functions, storages, dtypes and \
             OrderedDict are allowed, as torch.load(weights_only=True))"
        )),
        Err(why) => refuse(format!(
            "its pickle cannot be checked ({why}); refused without running it"
        )),
    }
}

/// torch.save always writes zip64 end records between the central directory
/// and the classic end record. zip 9.x (used by candle) then guesses the start
/// of the central directory from its size and, when the first entry is exactly
/// as long as those records (a 21-character archive name), starts one entry
/// late and rejects the file ("Invalid Central Directory header"). A copy
/// without the zip64 records is an equivalent plain zip that it reads. `None`
/// when the file does not have that layout.
fn zip32_copy(path: &Path) -> std::io::Result<Option<PathBuf>> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let tail_len = len.min(22 + 65535);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    f.read_to_end(&mut tail)?;
    let Some(pos) = tail.windows(4).rposition(|w| w == b"PK\x05\x06") else {
        return Ok(None);
    };
    if tail.len() < pos + 22 {
        return Ok(None);
    }
    let eocd = len - tail_len + pos as u64;
    let le32 = |o: usize| u32::from_le_bytes([tail[o], tail[o + 1], tail[o + 2], tail[o + 3]]);
    let (cd_size, cd_offset) = (le32(pos + 12), le32(pos + 16));
    if cd_size == u32::MAX || cd_offset == u32::MAX {
        return Ok(None); // a real zip64 archive: not the case worked around
    }
    let cd_end = cd_offset as u64 + cd_size as u64;
    if cd_end >= eocd {
        return Ok(None);
    }
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("semcon-{}-{n}.pth", std::process::id()));
    let mut out = std::fs::File::create(&tmp)?;
    f.seek(SeekFrom::Start(0))?;
    let copied = std::io::copy(&mut (&mut f).take(cd_end), &mut out)?;
    let written = copied == cd_end && out.write_all(&tail[pos..]).is_ok();
    if !written {
        let _ = std::fs::remove_file(&tmp);
        return Ok(None);
    }
    Ok(Some(tmp))
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
    /// torchvision's eval preprocessing for image folders: shorter side
    /// resized to this ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_size: Option<usize>,
    /// ... then center-cropped to this ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_size: Option<usize>,
    /// ... resampled with this (nearest, bilinear, bicubic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpolation: Option<crate::data::resample::Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// A ViT's attention heads, where the hidden size is not torchvision's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<usize>,
    /// An EfficientNet's BatchNorm eps, where the shapes match no B0–B7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_eps: Option<f64>,
    /// An EfficientNet's stride per stage, where it has not 7 stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_strides: Option<Vec<usize>>,
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
