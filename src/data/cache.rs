//! The decoded-image cache of image folders: after the first read, a
//! folder's images (decoded and preprocessed, uint8 CHW) are kept in one
//! file in the user's cache directory (`$SEMCON_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/semcon`, else `~/.cache/semcon`), named by a hash of
//! everything the pixels depend on: semcon's cache format, the folder, each
//! file's path, size and modification time, its label, and the
//! preprocessing. Any change gives another name, so a stale file is never
//! found; a file whose header, size or labels do not match what is asked
//! is ignored and rebuilt. Files are written through a temporary name and a
//! rename, so a crash never leaves a half-written cache under a real name.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SEMCONU8";
/// Bumped whenever decoding, preprocessing or the layout change.
const VERSION: u32 = 1;

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
#[derive(Clone, Copy)]
pub struct Key(u64);

impl Default for Key {
    fn default() -> Self {
        let mut k = Key(0xcbf2_9ce4_8422_2325);
        k.bytes(MAGIC);
        k.bytes(&VERSION.to_le_bytes());
        k
    }
}

impl Key {
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(&(s.len() as u64).to_le_bytes());
        self.bytes(s.as_bytes());
    }
    pub fn num(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    /// A file's path, size and modification time.
    pub fn file(&mut self, p: &Path) {
        self.str(&p.to_string_lossy());
        match std::fs::metadata(p) {
            Ok(m) => {
                self.num(m.len());
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as u64);
                self.num(t);
            }
            Err(_) => self.num(u64::MAX),
        }
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The cache directory (not created).
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SEMCON_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("semcon"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("semcon"))
}

/// What a cache file holds.
pub struct Cached {
    pub labels: Vec<u32>,
    pub pixels: Vec<u8>,
    /// Files that did not decode (skipped when the cache was written).
    pub skipped: u64,
}

const HEADER: usize = 8 + 4 + 8 * 5;

/// Reads `path` if it holds images of `c`x`h`x`w`; `None` (to be rebuilt)
/// for a missing, truncated, foreign or other-version file.
pub fn read(path: &Path, (c, h, w): (usize, usize, usize)) -> Option<Cached> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut head = [0u8; HEADER];
    f.read_exact(&mut head).ok()?;
    if &head[..8] != MAGIC || u32::from_le_bytes(head[8..12].try_into().ok()?) != VERSION {
        return None;
    }
    let num =
        |i: usize| u64::from_le_bytes(head[12 + 8 * i..20 + 8 * i].try_into().expect("8 bytes"));
    let (n, fc, fh, fw, skipped) = (num(0), num(1), num(2), num(3), num(4));
    if (fc, fh, fw) != (c as u64, h as u64, w as u64) {
        return None;
    }
    let img = (c * h * w) as u64;
    let want = (HEADER as u64).checked_add(n.checked_mul(4 + img)?)?;
    if len != want {
        return None;
    }
    let mut lb = vec![0u8; n as usize * 4];
    f.read_exact(&mut lb).ok()?;
    let labels = lb
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let mut pixels = vec![0u8; (n * img) as usize];
    f.read_exact(&mut pixels).ok()?;
    Some(Cached {
        labels,
        pixels,
        skipped,
    })
}

/// Writes a cache file atomically (temporary name, then rename).
pub fn write(
    path: &Path,
    (c, h, w): (usize, usize, usize),
    labels: &[u32],
    pixels: &[u8],
    skipped: u64,
) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&VERSION.to_le_bytes())?;
        for v in [labels.len() as u64, c as u64, h as u64, w as u64, skipped] {
            f.write_all(&v.to_le_bytes())?;
        }
        for l in labels {
            f.write_all(&l.to_le_bytes())?;
        }
        f.write_all(pixels)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
