//! MNIST / Fashion-MNIST idx files (plain or gzip).

use super::set::{Family, ImageSet, Split};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

pub struct IdxImages {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub pixels: Vec<u8>,
}

/// Decompresses gzip data (detected by its magic bytes); returns plain data as
/// is. The data inflated never exceeds what the idx header inside announces
/// (read first), so a small file that inflates without end is refused
/// instead of filling memory.
pub fn maybe_gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if !(bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
        return Ok(bytes.to_vec());
    }
    let corrupt =
        |e: std::io::Error| Error::format(path, format!("gzip data is corrupt or truncated: {e}"));
    let mut z = flate2::read::GzDecoder::new(bytes);
    // The magic number says how many 4-byte dimensions follow it.
    let mut head = vec![0u8; 4];
    let got = read_up_to(&mut z, &mut head).map_err(corrupt)?;
    if got < 4 {
        head.truncate(got);
        return Ok(head);
    }
    let ndim = head[3] as usize;
    head.resize(4 + 4 * ndim, 0);
    let got = read_up_to(&mut z, &mut head[4..]).map_err(corrupt)?;
    if got < 4 * ndim {
        head.truncate(4 + got);
        return Ok(head);
    }
    let dims: Vec<usize> = head[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    // One byte per element (the only idx type semcon reads); one byte more
    // than announced is read so that trailing data is seen by the parser.
    let body = super::files::checked_product(&dims).ok_or_else(|| {
        Error::format(
            path,
            format!("idx header announces {dims:?}, more than 2^64 bytes"),
        )
    })?;
    let mut out = head;
    z.take(body.saturating_add(1) as u64)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    Ok(out)
}

/// Reads until `buf` is full or the data ends; returns how much was read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn header(path: &Path, b: &[u8], want_magic: u32, what: &str) -> Result<Vec<usize>> {
    if b.len() < 4 {
        return Err(Error::format(path, "truncated idx file (no header)"));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != want_magic {
        return Err(Error::format(
            path,
            format!(
                "wrong idx magic number 0x{magic:08x} (expected 0x{want_magic:08x} for an idx {what} file)"
            ),
        ));
    }
    let ndim = (magic & 0xff) as usize;
    if b.len() < 4 + 4 * ndim {
        return Err(Error::format(path, "truncated idx file (header cut short)"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize
        })
        .collect();
    // Checked: a crafted header can announce more bytes than a usize holds.
    let need = super::files::checked_product(&dims).and_then(|body| body.checked_add(4 + 4 * ndim));
    if need.is_none_or(|need| b.len() < need) {
        let need = need.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
        return Err(Error::format(
            path,
            format!(
                "truncated idx file: header announces {:?} ({need} bytes) but the file has {} bytes",
                dims,
                b.len()
            ),
        ));
    }
    Ok(dims)
}

pub fn parse_images(path: &Path, b: &[u8]) -> Result<IdxImages> {
    let d = header(path, b, 0x0000_0803, "images (ubyte, 3-D)")?;
    let off = 16;
    Ok(IdxImages {
        n: d[0],
        h: d[1],
        w: d[2],
        pixels: b[off..off + d[0] * d[1] * d[2]].to_vec(),
    })
}

pub fn parse_labels(path: &Path, b: &[u8]) -> Result<Vec<u32>> {
    let d = header(path, b, 0x0000_0801, "labels (ubyte, 1-D)")?;
    Ok(b[8..8 + d[0]].iter().map(|&v| v as u32).collect())
}

pub fn assemble(name: String, img: IdxImages, labels: Vec<u32>, fam: Family) -> Result<ImageSet> {
    if labels.len() != img.n {
        return Err(crate::invalid!(
            "{name}: {} images but {} labels",
            img.n,
            labels.len()
        ));
    }
    let class_names: Vec<String> = match fam {
        Family::FashionMnist => super::set::FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        _ => {
            let k = labels
                .iter()
                .copied()
                .max()
                .map_or(0, |m| m as usize + 1)
                .max(10);
            (0..k).map(|i| i.to_string()).collect()
        }
    };
    ImageSet {
        name,
        channels: 1,
        height: img.h,
        width: img.w,
        data: super::pixels::to_unit(&img.pixels).into(),
        labels,
        class_names,
        norm: fam.norm(),
    }
    .validated()
}

/// Finds `PREFIX-images-idx3-ubyte[.gz]` for the split inside `dir`.
pub fn find_in_dir(dir: &Path, split: Split) -> Option<PathBuf> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    ["", ".gz"]
        .iter()
        .map(|ext| dir.join(format!("{prefix}-images-idx3-ubyte{ext}")))
        .find(|p| p.is_file())
}

/// Loads an images idx file and its labels file (same name with `labels`/`idx1`).
pub fn load_files(images: &Path) -> Result<ImageSet> {
    let name = images.file_name().and_then(|s| s.to_str()).unwrap_or("");
    let lname = name.replace("images", "labels").replace("idx3", "idx1");
    let dir = images.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join(&lname),
        dir.join(format!("{lname}.gz")),
        dir.join(lname.trim_end_matches(".gz")),
    ];
    let lpath = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
        Error::format(
            images,
            format!("no labels file {} next to it", dir.join(&lname).display()),
        )
    })?;
    let img = parse_images(
        images,
        &maybe_gunzip(images, &super::files::read_file(images)?)?,
    )?;
    let labels = parse_labels(
        lpath,
        &maybe_gunzip(lpath, &super::files::read_file(lpath)?)?,
    )?;
    let lower = images.to_string_lossy().to_lowercase();
    let fam = if lower.contains("fashion") {
        Family::FashionMnist
    } else if lower.contains("mnist") {
        Family::Mnist
    } else {
        Family::Unknown
    };
    assemble(images.display().to_string(), img, labels, fam)
}
