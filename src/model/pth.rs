//! The tensors of a torch.save archive (`.pth`, zip format): candle's
//! unpickler builds the object tree of `data.pkl` (after
//! [`super::pickle_scan`] has allowed every global it names); this file finds
//! the state dict in that tree and reads each tensor's storage from the
//! archive, with every tuple index, offset and size checked against the
//! archive before anything is allocated. (candle's own walk indexes tuples
//! unchecked, which panics on a malformed file, and allocates whatever a
//! shape announces before reading.)

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use std::io::Read;
use std::path::Path;

type R<T> = std::result::Result<T, String>;

/// Deflate's best ratio: no member inflates to more than this many times its
/// compressed size.
const MAX_RATIO: u64 = 1032;

/// The float tensors of the state dict in `file`: under the first of `keys`
/// that holds tensors, else at the top level (empty when there are none).
/// Integer tensors (`num_batches_tracked`) are skipped.
pub fn read(file: &Path, keys: &[&str]) -> R<Vec<(String, Tensor)>> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| e.to_string())?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or("no data.pkl in the archive")?
        .into_owned();
    let dir = pkl.strip_suffix(".pkl").unwrap_or(&pkl).to_string();
    let bytes = read_member(&mut zip, &pkl, None)?;
    // The caller has checked the pickle with a message naming what it calls;
    // checked again here so that nothing unchecked is ever unpickled.
    match super::pickle_scan::first_disallowed(&bytes) {
        Ok(None) => {}
        Ok(Some(global)) => return Err(format!("its pickle calls {global}; refused")),
        Err(why) => return Err(format!("its pickle cannot be checked ({why}); refused")),
    }
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut std::io::Cursor::new(&bytes))
        .map_err(|e| format!("pickle: {e}"))?;
    let obj = stack.finalize().map_err(|e| format!("pickle: {e}"))?;
    // A TorchScript-style module wraps its state in BUILD(REDUCE(Module)).
    let obj = match obj {
        Object::Build { callable, args } => match *callable {
            Object::Reduce { callable, .. }
                if matches!(&*callable, Object::Class { module_name, class_name }
                    if module_name == "__torch__" && class_name == "Module") =>
            {
                *args
            }
            other => Object::Build {
                callable: Box::new(other),
                args,
            },
        },
        obj => obj,
    };
    let Object::Dict(entries) = obj else {
        return Ok(Vec::new());
    };
    for key in keys {
        let nested = entries
            .iter()
            .find(|(k, _)| matches!(k, Object::Unicode(s) if s == key));
        if let Some((_, Object::Dict(inner))) = nested {
            let found = tensors(&mut zip, &dir, inner)?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
    }
    tensors(&mut zip, &dir, &entries)
}

type Zip = zip::ZipArchive<std::io::BufReader<std::fs::File>>;

/// A member's bytes: `want` of them after skipping `skip` (or the whole
/// member), refused before reading when the member cannot hold them.
fn read_member(zip: &mut Zip, name: &str, want: Option<(u64, u64)>) -> R<Vec<u8>> {
    let e = zip
        .by_name(name)
        .map_err(|e| format!("archive member {name}: {e}"))?;
    let (size, packed) = (e.size(), e.compressed_size());
    if size > packed.saturating_mul(MAX_RATIO).saturating_add(64) {
        return Err(format!(
            "archive member {name} declares {size} bytes from {packed} compressed bytes, which no zip data inflates to"
        ));
    }
    let (skip, len) = want.unwrap_or((0, size));
    if skip.checked_add(len).is_none_or(|end| end > size) {
        return Err(format!(
            "archive member {name} holds {size} bytes, fewer than the {len} bytes at offset {skip} its tensor needs"
        ));
    }
    let mut r = e;
    std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
        .map_err(|e| format!("archive member {name}: {e}"))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len as usize)
        .map_err(|_| format!("archive member {name}: {len} bytes do not fit in memory"))?;
    r.take(len)
        .read_to_end(&mut out)
        .map_err(|e| format!("archive member {name}: {e}"))?;
    if (out.len() as u64) < len {
        return Err(format!("archive member {name} is truncated"));
    }
    Ok(out)
}

/// The float tensors among a dict's entries (other values are skipped).
fn tensors(zip: &mut Zip, dir: &str, entries: &[(Object, Object)]) -> R<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (k, v) in entries {
        let Object::Unicode(name) = k else { continue };
        let Some(info) = tensor_info(v) else { continue };
        let Some(dtype) = info.dtype else { continue };
        let t = read_tensor(zip, dir, &info, dtype).map_err(|e| format!("tensor '{name}': {e}"))?;
        out.push((name.clone(), t));
    }
    Ok(out)
}

/// What `torch._utils._rebuild_tensor_v2` is called with.
struct Info {
    /// `None`: a storage of integers or booleans (skipped).
    dtype: Option<DType>,
    key: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn tuple(o: &Object) -> Option<&[Object]> {
    match o {
        Object::Tuple(v) => Some(v),
        _ => None,
    }
}

fn class(o: &Object) -> Option<(&str, &str)> {
    match o {
        Object::Class {
            module_name,
            class_name,
        } => Some((module_name, class_name)),
        _ => None,
    }
}

fn int(o: &Object) -> Option<i64> {
    match o {
        Object::Int(v) => Some(*v as i64),
        Object::Long(v) => Some(*v),
        _ => None,
    }
}

fn ints(o: &Object) -> Option<Vec<i64>> {
    tuple(o)?.iter().map(int).collect()
}

/// The tensor a state dict value rebuilds (`None` for anything else).
fn tensor_info(v: &Object) -> Option<Info> {
    let Object::Reduce { callable, args } = v else {
        return None;
    };
    let (callable, args): (&Object, &Object) = match class(callable)? {
        // nn.Parameter: _rebuild_parameter(tensor, requires_grad, hooks)
        ("torch._utils", "_rebuild_parameter") => return tensor_info(tuple(args)?.first()?),
        // a tensor subclass: _rebuild_from_type_v2(func, type, args, state)
        ("torch._tensor", "_rebuild_from_type_v2") => {
            let a = tuple(args)?;
            (a.first()?, a.get(2)?)
        }
        _ => (callable, args),
    };
    if class(callable)? != ("torch._utils", "_rebuild_tensor_v2") {
        return None;
    }
    // (storage, storage_offset, size, stride, requires_grad, hooks)
    let a = tuple(args)?;
    let Object::PersistentLoad(storage) = a.first()? else {
        return None;
    };
    // ('storage', torch.FloatStorage, key, location, numel)
    let s = tuple(storage)?;
    let (_, storage_class) = class(s.get(1)?)?;
    let key = match s.get(2)? {
        Object::Unicode(k) => k.clone(),
        other => int(other)?.to_string(),
    };
    let dtype = match storage_class {
        "FloatStorage" => Some(DType::F32),
        "DoubleStorage" => Some(DType::F64),
        "HalfStorage" => Some(DType::F16),
        "BFloat16Storage" => Some(DType::BF16),
        _ => None,
    };
    Some(Info {
        dtype,
        key,
        offset: int(a.get(1)?)?,
        size: ints(a.get(2)?)?,
        stride: ints(a.get(3)?)?,
    })
}

/// Reads one tensor's elements from its storage member, as f32.
fn read_tensor(zip: &mut Zip, dir: &str, info: &Info, dtype: DType) -> R<Tensor> {
    let bad = || {
        format!(
            "shape {:?}, stride {:?} and offset {} do not describe a tensor",
            info.size, info.stride, info.offset
        )
    };
    let dims: Vec<usize> = info
        .size
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let offset = u64::try_from(info.offset).map_err(|_| bad())?;
    if info.stride.len() != dims.len() {
        return Err(bad());
    }
    let numel = crate::data::files::checked_product(&dims).ok_or_else(bad)?;
    // Contiguous in C order, or in Fortran order (read reversed, then
    // transposed back); anything else is not what torch.save writes for a
    // state dict.
    let c_strides = strides(&dims);
    let mut f_dims = dims.clone();
    f_dims.reverse();
    let mut f_strides = strides(&f_dims);
    f_strides.reverse();
    let given: Vec<usize> = info.stride.iter().map(|&s| s.max(0) as usize).collect();
    let matches = |want: &[usize]| {
        numel == 0
            || dims
                .iter()
                .zip(want.iter().zip(&given))
                .all(|(&d, (w, g))| d == 1 || w == g)
    };
    let fortran = if matches(&c_strides) {
        false
    } else if matches(&f_strides) {
        true
    } else {
        return Err(format!(
            "strides {:?} for shape {:?} are not contiguous (semcon reads contiguous tensors only)",
            info.stride, info.size
        ));
    };
    let elem = dtype.size_in_bytes() as u64;
    let len = (numel as u64).checked_mul(elem).ok_or_else(bad)?;
    let skip = offset.checked_mul(elem).ok_or_else(bad)?;
    let member = format!("{dir}/{}", info.key);
    let bytes = read_member(zip, &member, Some((skip, len)))?;
    let read_dims = if fortran { f_dims } else { dims.clone() };
    let t = Tensor::from_raw_buffer(&bytes, dtype, &read_dims, &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(|e| e.to_string())?;
    if fortran && dims.len() > 1 {
        let axes: Vec<usize> = (0..dims.len()).rev().collect();
        return t
            .permute(axes)
            .and_then(|t| t.contiguous())
            .map_err(|e| e.to_string());
    }
    Ok(t)
}

/// Row-major strides of `dims`, in elements.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(dims[i + 1]);
    }
    s
}
