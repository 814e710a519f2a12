//! Writing numpy files as numpy does (`np.save`'s header, `np.savez`'s
//! stored members), atomically for output files.

use crate::data::files::write_atomically;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use std::path::Path;

/// One array of an .npz being written.
pub enum NpyArray<'a> {
    /// A tensor (float32/64, int64, uint8, uint32), written as numpy would.
    Tensor(&'a Tensor),
    /// Strings as a numpy unicode array (`<U…`): one string as a 0-d array
    /// (`np.array("layer3")`), else a 1-d array.
    Strings(&'a [String]),
}

/// The .npy header numpy (1.23 and later) writes: format 1.0, room for the
/// first axis to grow to 21 digits, padded so the data starts at a multiple
/// of 64 bytes.
fn npy_header(descr: &str, shape_dims: &[usize]) -> Vec<u8> {
    let shape = match shape_dims {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    if let Some(first) = shape_dims.first() {
        h.push_str(&" ".repeat(21usize.saturating_sub(first.to_string().len())));
    }
    let pad = 64 - (10 + h.len() + 1) % 64;
    h.push_str(&" ".repeat(pad));
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

/// The .npy encoding of `a`, as `np.save` writes it.
pub fn encode_npy(a: &NpyArray) -> Result<Vec<u8>> {
    Ok(match a {
        NpyArray::Strings(v) => {
            let chars = v
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(1);
            let shape: &[usize] = if v.len() == 1 { &[] } else { &[v.len()] };
            let mut out = npy_header(&format!("<U{chars}"), shape);
            for s in v.iter() {
                let mut n = 0;
                for c in s.chars() {
                    out.extend_from_slice(&(c as u32).to_le_bytes());
                    n += 1;
                }
                out.resize(out.len() + 4 * (chars - n), 0);
            }
            out
        }
        NpyArray::Tensor(t) => {
            let flat = t.flatten_all()?;
            macro_rules! bytes {
                ($descr:expr, $t:ty) => {{
                    let mut out = npy_header($descr, t.dims());
                    for v in flat.to_vec1::<$t>()? {
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                    out
                }};
            }
            match t.dtype() {
                DType::F32 => bytes!("<f4", f32),
                DType::F64 => bytes!("<f8", f64),
                DType::I64 => bytes!("<i8", i64),
                DType::U32 => bytes!("<u4", u32),
                DType::U8 => bytes!("|u1", u8),
                d => return Err(crate::invalid!("cannot write a {d:?} tensor to .npy")),
            }
        }
    })
}

/// Writes `arrays` to the .npz `out` atomically ([`write_atomically`]).
pub fn save_npz(out: &Path, arrays: &[(&str, NpyArray)]) -> Result<()> {
    write_atomically(out, |tmp| write_npz(tmp, arrays))
}

/// Writes `t` to the .npy `out` atomically ([`write_atomically`]).
pub fn save_npy(out: &Path, t: &Tensor) -> Result<()> {
    write_atomically(out, |tmp| Ok(t.write_npy(tmp)?))
}

/// Writes `arrays` to the .npz `path` (stored members, as `np.savez`).
pub fn write_npz(path: &Path, arrays: &[(&str, NpyArray)]) -> Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let zerr = |e: zip::result::ZipError| Error::format(path, format!("cannot write: {e}"));
    for (name, a) in arrays {
        let bytes = encode_npy(a)?;
        let options: zip::write::FileOptions<()> = zip::write::FileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(bytes.len() >= u32::MAX as usize);
        zip.start_file(format!("{name}.npy"), options)
            .map_err(zerr)?;
        zip.write_all(&bytes).map_err(|e| Error::io(path, e))?;
    }
    let mut w = zip.finish().map_err(zerr)?;
    w.flush().map_err(|e| Error::io(path, e))
}
