//! Reading numpy files: `.npy` (any byte order, C or Fortran order) and
//! `.npz` (stored or deflated members), decoded on demand.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::io::Read;
use std::path::{Path, PathBuf};

struct Member {
    name: String,
    method: u16,
    data_start: usize,
    compressed: usize,
    size: usize,
}

/// An opened .npz file (read into memory; members are decoded on demand).
pub struct Npz {
    path: PathBuf,
    bytes: Vec<u8>,
    members: Vec<Member>,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

impl Npz {
    pub fn open(path: &Path) -> Result<Npz> {
        let bytes = crate::data::files::read_file(path)?;
        let members = parse_zip(&bytes).ok_or_else(|| {
            Error::format(
                path,
                "not a readable .npz file (not a zip archive, or truncated)",
            )
        })?;
        Ok(Npz {
            path: path.to_path_buf(),
            bytes,
            members,
        })
    }

    /// Array names (member names without `.npy`), in file order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The array `name`, `None` when there is no such member.
    pub fn get(&self, name: &str) -> Result<Option<Tensor>> {
        let Some(npy) = self.npy_bytes(name)? else {
            return Ok(None);
        };
        parse_npy(&npy).map(Some).map_err(|msg| self.err(name, msg))
    }

    /// The string array `name` (numpy `<U…`, flattened), `None` when there
    /// is no such member.
    pub fn get_strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        let Some(npy) = self.npy_bytes(name)? else {
            return Ok(None);
        };
        parse_npy_strings(&npy)
            .map(Some)
            .map_err(|msg| self.err(name, msg))
    }

    fn err(&self, name: &str, msg: String) -> Error {
        Error::format(&self.path, format!("array '{name}': {msg}"))
    }

    /// The decompressed .npy bytes of member `name`.
    pub fn npy_bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(m) = self.members.iter().find(|m| m.name == name) else {
            return Ok(None);
        };
        let raw = m
            .data_start
            .checked_add(m.compressed)
            .and_then(|end| self.bytes.get(m.data_start..end))
            .ok_or_else(|| self.err(name, "the file is truncated".into()))?;
        Ok(Some(match m.method {
            0 => raw.to_vec(),
            8 => {
                // Inflated no further than the size the archive declares
                // (plus one byte, to tell a member that inflates beyond it),
                // reserved no further than deflate's best ratio allows.
                let mut out = Vec::with_capacity(m.size.min(raw.len().saturating_mul(1032)));
                flate2::read::DeflateDecoder::new(raw)
                    .take((m.size as u64).saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(|e| self.err(name, format!("compressed data is corrupt: {e}")))?;
                if out.len() > m.size {
                    return Err(self.err(
                        name,
                        format!(
                            "compressed data inflates beyond the {} bytes the archive declares",
                            m.size
                        ),
                    ));
                }
                out
            }
            k => {
                return Err(self.err(
                    name,
                    format!(
                        "zip compression method {k} is not supported (np.savez and np.savez_compressed are)"
                    ),
                ))
            }
        }))
    }
}

/// The members of a zip archive (None when it is not one).
fn parse_zip(b: &[u8]) -> Option<Vec<Member>> {
    let lo = b.len().saturating_sub(22 + 65535);
    let eocd = (lo..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == *b"PK\x05\x06")?;
    let mut count = u16_at(b, eocd + 10)? as u64;
    let mut cd_offset = u32_at(b, eocd + 16)? as u64;
    if count == 0xFFFF || cd_offset == 0xFFFF_FFFF {
        // zip64: the locator precedes the classic end record
        let loc = eocd.checked_sub(20)?;
        if b.get(loc..loc + 4)? != b"PK\x06\x07" {
            return None;
        }
        let e64 = usize::try_from(u64_at(b, loc + 8)?)
            .ok()
            .filter(|&o| o <= b.len())?;
        if b.get(e64..e64 + 4)? != b"PK\x06\x06" {
            return None;
        }
        count = u64_at(b, e64 + 32)?;
        cd_offset = u64_at(b, e64 + 48)?;
    }
    let mut members = Vec::new();
    // Offsets past the end are refused before any arithmetic on them.
    let mut o = usize::try_from(cd_offset).ok().filter(|&o| o <= b.len())?;
    for _ in 0..count {
        if b.get(o..o + 4)? != b"PK\x01\x02" {
            return None;
        }
        let method = u16_at(b, o + 10)?;
        let mut compressed = u32_at(b, o + 20)? as u64;
        let mut size = u32_at(b, o + 24)? as u64;
        let name_len = u16_at(b, o + 28)? as usize;
        let extra_len = u16_at(b, o + 30)? as usize;
        let comment_len = u16_at(b, o + 32)? as usize;
        let mut local = u32_at(b, o + 42)? as u64;
        let name = String::from_utf8_lossy(b.get(o + 46..o + 46 + name_len)?).into_owned();
        // zip64 extended information: the saturated fields, in this order
        let mut e = o + 46 + name_len;
        let extra_end = e + extra_len;
        while e + 4 <= extra_end {
            let (id, len) = (u16_at(b, e)?, u16_at(b, e + 2)? as usize);
            if id == 1 {
                let mut f = e + 4;
                for v in [&mut size, &mut compressed, &mut local] {
                    if *v == 0xFFFF_FFFF {
                        *v = u64_at(b, f)?;
                        f += 8;
                    }
                }
            }
            e += 4 + len;
        }
        let local = usize::try_from(local).ok().filter(|&l| l <= b.len())?;
        if b.get(local..local + 4)? != b"PK\x03\x04" {
            return None;
        }
        let data_start =
            local + 30 + u16_at(b, local + 26)? as usize + u16_at(b, local + 28)? as usize;
        members.push(Member {
            name: name.strip_suffix(".npy").unwrap_or(&name).to_string(),
            method,
            data_start,
            compressed: usize::try_from(compressed).ok()?,
            size: usize::try_from(size).ok()?,
        });
        o += 46 + name_len + extra_len + comment_len;
    }
    Some(members)
}

fn header_field<'a>(h: &'a str, key: &str) -> Option<&'a str> {
    let i = h.find(&format!("'{key}'"))? + key.len() + 2;
    Some(h[i..].trim_start().strip_prefix(':')?.trim_start())
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Reads one `.npy` file (any byte order, C or Fortran order; dtypes as above).
pub fn read_npy_file(path: &Path) -> Result<Tensor> {
    if !path.is_file() {
        return Err(Error::format(
            path,
            if path.is_dir() {
                "is a directory, not a .npy file"
            } else {
                "no such file"
            },
        ));
    }
    let bytes = crate::data::files::read_file(path)?;
    parse_npy(&bytes).map_err(|e| Error::format(path, format!("not a readable .npy file: {e}")))
}

/// A parsed .npy header: dtype string, Fortran order, shape, and the data.
struct NpyHeader<'a> {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    body: &'a [u8],
}

fn parse_header(b: &[u8]) -> std::result::Result<NpyHeader<'_>, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy array".into());
    }
    let (hlen, off) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        _ => match u32_at(b, 8) {
            Some(n) => (n as usize, 12),
            None => return Err("truncated .npy header".into()),
        },
    };
    let header = b
        .get(off..off + hlen)
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .ok_or("truncated .npy header")?;
    let bad = || format!("cannot parse the .npy header {}", header.trim());
    let descr = header_field(&header, "descr").ok_or_else(bad)?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(bad)?
        .to_string();
    let fortran = header_field(&header, "fortran_order")
        .ok_or_else(bad)?
        .starts_with("True");
    let shape_s = header_field(&header, "shape").ok_or_else(bad)?;
    let shape_s = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(bad)?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    // Even an empty array's shape must have strides that fit in a usize
    // (0 x 2^40 x 2^40 holds nothing, but its strides overflow).
    let strides: Vec<usize> = shape.iter().map(|&d| d.max(1)).collect();
    if shape.contains(&0) && crate::data::files::checked_product(&strides).is_none() {
        return Err(format!("shape {shape:?} is too large"));
    }
    Ok(NpyHeader {
        descr,
        fortran,
        shape,
        body: &b[off + hlen..],
    })
}

/// Decodes a numpy unicode string array (`<U…`/`>U…`, any shape, flattened
/// in C order); errors are short messages (the caller adds the file).
pub fn parse_npy_strings(b: &[u8]) -> std::result::Result<Vec<String>, String> {
    let h = parse_header(b)?;
    // Split on a character boundary: the descr is text from the file.
    let cut = h
        .descr
        .char_indices()
        .nth(2)
        .map_or(h.descr.len(), |(i, _)| i);
    let (big, chars) = match h.descr.split_at(cut) {
        ("<U" | "=U" | "|U", n) => (false, n),
        (">U", n) => (true, n),
        _ => {
            return Err(format!(
                "expected a string array ('<U…'), found '{}'",
                h.descr
            ))
        }
    };
    let chars: usize = chars
        .parse()
        .map_err(|_| format!("bad dtype '{}'", h.descr))?;
    let n = crate::data::files::checked_product(&h.shape);
    let need = n.and_then(|n| n.checked_mul(chars)?.checked_mul(4));
    // semcon reads string arrays as names (classes, layers): no more than
    // this many, even of empty strings, which take no bytes in the file.
    const MAX_STRINGS: usize = 1_000_000;
    let (Some(n), Some(need)) = (n.filter(|&n| n <= MAX_STRINGS), need) else {
        return Err(format!(
            "string array of shape {:?} is too large (at most {MAX_STRINGS} strings)",
            h.shape
        ));
    };
    if h.body.len() < need || (h.fortran && h.shape.len() > 1) {
        return Err(if h.fortran && h.shape.len() > 1 {
            "Fortran-order string arrays are not supported".into()
        } else {
            format!("truncated: {n} strings of {chars} characters need {need} bytes")
        });
    }
    (0..n)
        .map(|i| {
            h.body[i * chars * 4..(i + 1) * chars * 4]
                .chunks_exact(4)
                .map(|c| {
                    let c: [u8; 4] = c.try_into().expect("chunks of 4");
                    if big {
                        u32::from_be_bytes(c)
                    } else {
                        u32::from_le_bytes(c)
                    }
                })
                .take_while(|&u| u != 0)
                .map(|u| char::from_u32(u).ok_or_else(|| format!("invalid character {u:#x}")))
                .collect()
        })
        .collect()
}

/// Decodes one .npy array; errors are short messages (the caller adds the file).
pub fn parse_npy(b: &[u8]) -> std::result::Result<Tensor, String> {
    let NpyHeader {
        descr,
        fortran,
        shape,
        body,
    } = parse_header(b)?;
    let descr = descr.as_str();
    let (order, kind) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('<', descr),
    };
    let size: usize = kind.get(1..).and_then(|s| s.parse().ok()).ok_or_else(|| {
        format!("unsupported dtype '{descr}' (expected bool, integers or floats)")
    })?;
    // Checked: a crafted header can announce more bytes than a usize holds.
    let n = crate::data::files::checked_product(&shape);
    let need = n.and_then(|n| n.checked_mul(size));
    let Some(n) = n.filter(|_| need.is_some_and(|need| need <= body.len())) else {
        let need = need.map_or_else(|| "more than 2^64".to_string(), |v| v.to_string());
        return Err(format!(
            "truncated: shape {shape:?} of '{descr}' needs {need} bytes, the array has {}",
            body.len()
        ));
    };
    let big = order == '>';
    let word = |i: usize| -> [u8; 8] {
        let mut w = [0u8; 8];
        let s = &body[i * size..(i + 1) * size];
        if big {
            for (k, &v) in s.iter().rev().enumerate() {
                w[k] = v;
            }
        } else {
            w[..size].copy_from_slice(s);
        }
        w
    };
    // Fortran order: the reversed shape in C order, transposed back below.
    let c_shape: Vec<usize> = if fortran {
        shape.iter().rev().copied().collect()
    } else {
        shape.clone()
    };
    let dev = &Device::Cpu;
    let t = match (kind.as_bytes()[0], size) {
        (b'b', 1) | (b'u', 1) => Tensor::from_vec(body[..n].to_vec(), c_shape, dev),
        (b'i', 1 | 2 | 4 | 8) | (b'u', 2 | 4 | 8) => {
            let signed = kind.starts_with('i');
            let v: Vec<i64> = (0..n)
                .map(|i| {
                    let w = u64::from_le_bytes(word(i));
                    let shift = 64 - 8 * size as u32;
                    if signed {
                        ((w << shift) as i64) >> shift
                    } else {
                        w as i64
                    }
                })
                .collect();
            Tensor::from_vec(v, c_shape, dev)
        }
        (b'f', 2) => {
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    let w = word(i);
                    f16_to_f32(u16::from_le_bytes([w[0], w[1]]))
                })
                .collect();
            Tensor::from_vec(v, c_shape, dev)
        }
        (b'f', 4) => {
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    let w = word(i);
                    f32::from_le_bytes([w[0], w[1], w[2], w[3]])
                })
                .collect();
            Tensor::from_vec(v, c_shape, dev)
        }
        (b'f', 8) => {
            let v: Vec<f64> = (0..n).map(|i| f64::from_le_bytes(word(i))).collect();
            Tensor::from_vec(v, c_shape, dev)
        }
        _ => {
            return Err(format!(
                "unsupported dtype '{descr}' (expected bool, integers or floats)"
            ))
        }
    }
    .map_err(|e| e.to_string())?;
    if fortran && shape.len() > 1 {
        let axes: Vec<usize> = (0..shape.len()).rev().collect();
        return t
            .permute(axes)
            .and_then(|t| t.contiguous())
            .map_err(|e| e.to_string());
    }
    Ok(t)
}

/// Whether a tensor holds integers (labels).
pub fn is_integer(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64
    )
}
