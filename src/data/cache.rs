//! The decoded-image cache of image folders: after the first read, a
//! folder's images (decoded and preprocessed, uint8 CHW) are kept in one
//! file in the user's cache directory (`$SEMCON_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/semcon`, else `~/.cache/semcon`), named by a hash of
//! everything the pixels depend on: semcon's cache format, the folder, each
//! file's path, size and modification time, its label, and the
//! preprocessing. Any change gives another name, so a stale file is never
//! found; a file whose header, size or labels do not match what is asked
//! is ignored and rebuilt. Files are written through a temporary name and a
//! rename, so a crash never leaves a half-written cache under a real name,
//! and a file is never changed in place. A cache is read by mapping it, so
//! the images take no memory of the process's own.

use super::pixels::{Bytes, Growing, Pixels};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SEMCONU8";
/// Bumped whenever decoding, preprocessing or the layout change.
const VERSION: u32 = 2;

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

/// What a cache file holds: the pixels stay in the file, mapped.
pub struct Cached {
    pub labels: Vec<u32>,
    /// uint8 CHW images, mapped read-only from the file.
    pub pixels: Pixels,
    /// Files that did not decode (skipped when the cache was written).
    pub skipped: u64,
}

/// Layout: the header (magic, version, then n, c, h, w and the skipped
/// count as u64), `n * c * h * w` pixel bytes, then `n` u32 labels; all
/// little-endian. The labels come last so that the pixels can be written
/// as they are decoded.
const HEADER: usize = 8 + 4 + 8 * 5;

/// Maps `path` if it holds images of `c`x`h`x`w`; `None` (to be rebuilt)
/// for a missing, truncated, foreign or other-version file.
///
/// The cache is only ever replaced by a rename, never written in place, so
/// a mapping stays valid while another run rebuilds the file.
pub fn map(path: &Path, (c, h, w): (usize, usize, usize)) -> Option<Cached> {
    let f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len < HEADER as u64 {
        return None;
    }
    // SAFETY: the file is opened read-only and semcon never writes a cache
    // file in place (it writes another name and renames it over).
    let map = unsafe { memmap2::Mmap::map(&f) }.ok()?;
    let head = &map[..HEADER];
    if &head[..8] != MAGIC || u32::from_le_bytes(head[8..12].try_into().ok()?) != VERSION {
        return None;
    }
    let num =
        |i: usize| u64::from_le_bytes(head[12 + 8 * i..20 + 8 * i].try_into().expect("8 bytes"));
    let (n, fc, fh, fw, skipped) = (num(0), num(1), num(2), num(3), num(4));
    if (fc, fh, fw) != (c as u64, h as u64, w as u64) || skipped.checked_add(n).is_none() {
        return None;
    }
    let img = (c * h * w) as u64;
    let px = n.checked_mul(img)?;
    let want = (HEADER as u64)
        .checked_add(px)?
        .checked_add(n.checked_mul(4)?)?;
    if len != want || map.len() as u64 != len {
        return None;
    }
    let (px, n) = (px as usize, n as usize);
    let labels = map[HEADER + px..]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect::<Vec<u32>>();
    debug_assert_eq!(labels.len(), n);
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    Some(Cached {
        labels,
        pixels: Pixels::U8(Arc::new(Bytes::Mapped {
            map,
            offset: HEADER,
            len: px,
        })),
        skipped,
    })
}

/// A cache file being written as images are decoded: a temporary name,
/// renamed to the real one by [`Writer::finish`]; dropped unfinished (an
/// error, a bad image, Ctrl-C unwinding), the temporary file is removed.
pub struct Writer {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tmp: PathBuf,
    path: PathBuf,
    shape: (usize, usize, usize),
}

impl Writer {
    /// Starts `path` (its directory created) for images of `shape`.
    pub fn create(path: &Path, shape: (usize, usize, usize)) -> std::io::Result<Writer> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
            remove_stale(d);
        }
        let tmp = tmp_name(path);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, create_locked(&tmp)?);
        // Made first, so that a failure below removes the temporary file.
        let mut w = Writer {
            file: None,
            tmp,
            path: path.to_path_buf(),
            shape,
        };
        // The real header is written by `finish`, when the count is known.
        file.write_all(&[0u8; HEADER])?;
        w.file = Some(file);
        Ok(w)
    }

    /// Appends decoded images' bytes.
    pub fn pixels(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.file.as_mut().expect("not finished").write_all(b)
    }

    /// Writes the labels and the header, syncs, renames the file to its real
    /// name and maps it.
    pub fn finish(mut self, labels: &[u32], skipped: u64) -> std::io::Result<Cached> {
        let mut f = self.file.take().expect("not finished");
        for l in labels {
            f.write_all(&l.to_le_bytes())?;
        }
        let mut f = f.into_inner().map_err(|e| e.into_error())?;
        f.seek(std::io::SeekFrom::Start(0))?;
        f.write_all(&header(labels.len(), self.shape, skipped))?;
        f.sync_all()?;
        // Renamed while still locked, so no other run takes it for stale.
        std::fs::rename(&self.tmp, &self.path)?;
        drop(f);
        map(&self.path, self.shape).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the cache file just written does not read back",
            )
        })
    }
}

/// A cache file filled through a mapping while it is read (the explorer on
/// a folder not yet cached): the pixels go straight into the file's pages,
/// and [`GrowingFile::finish`] adds the labels and header and renames it.
/// Dropped unfinished, the temporary file is removed.
pub struct GrowingFile {
    file: Option<std::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    shape: (usize, usize, usize),
    images: usize,
}

impl GrowingFile {
    /// A temporary file sized for `images` images of `shape`, and the store
    /// mapped on it.
    pub fn create(
        path: &Path,
        shape: (usize, usize, usize),
        images: usize,
    ) -> std::io::Result<(GrowingFile, Growing)> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
            remove_stale(d);
        }
        let tmp = tmp_name(path);
        let file = create_locked(&tmp)?;
        unfinished(&tmp, true);
        let mut g = GrowingFile {
            file: None,
            tmp,
            path: path.to_path_buf(),
            shape,
            images,
        };
        let img = shape.0 * shape.1 * shape.2;
        let len = images
            .checked_mul(img + 4)
            .and_then(|b| b.checked_add(HEADER))
            .ok_or_else(|| std::io::Error::other("too many images for one cache file"))?;
        file.set_len(len as u64)?;
        reserve(&file, len)?;
        // SAFETY: a file of our own, just created; nothing else maps it.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }?;
        g.file = Some(file);
        Ok((g, Growing::new(map, HEADER, images, img)))
    }

    /// The store is complete: labels and header written, flushed, renamed.
    pub fn finish(mut self, store: &Growing, labels: &[u32]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let f = self.file.take().expect("not finished");
        let (c, h, w) = self.shape;
        if labels.len() != self.images || store.progress().0 != self.images {
            return Err(std::io::Error::other("the store is not complete"));
        }
        let mut tail = Vec::with_capacity(labels.len() * 4);
        for l in labels {
            tail.extend_from_slice(&l.to_le_bytes());
        }
        f.write_all_at(&tail, (HEADER + self.images * c * h * w) as u64)?;
        f.write_all_at(&header(self.images, self.shape, 0), 0)?;
        store.flush()?;
        f.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
    }
}

impl Drop for GrowingFile {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        unfinished(&self.tmp, false);
    }
}

/// Reserves the disk blocks of a file written through a mapping: a full
/// disk is then an error here (and the folder decodes into memory instead)
/// rather than a SIGBUS when a page is written. Where the file system cannot
/// reserve, the cache is not written through a mapping at all.
fn reserve(file: &std::fs::File, len: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor; mode 0 allocates.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
        if r == 0 {
            return Ok(());
        }
        Err(std::io::Error::last_os_error())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Err(std::io::Error::other(
            "disk space cannot be reserved on this system",
        ))
    }
}

fn header(n: usize, (c, h, w): (usize, usize, usize), skipped: u64) -> Vec<u8> {
    let mut head = Vec::with_capacity(HEADER);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    for v in [n as u64, c as u64, h as u64, w as u64, skipped] {
        head.extend_from_slice(&v.to_le_bytes());
    }
    head
}

/// Temporary files of growing caches not yet renamed (removed at exit by
/// [`remove_unfinished`], since the decoding thread does not outlive it).
static UNFINISHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes the temporary files of caches still being written (called as
/// semcon exits).
pub fn remove_unfinished() {
    let files = std::mem::take(&mut *UNFINISHED.lock().unwrap_or_else(|e| e.into_inner()));
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

fn unfinished(tmp: &Path, add: bool) {
    let mut v = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
    v.retain(|p| p != tmp);
    if add {
        v.push(tmp.to_path_buf());
    }
}

/// `path.tmpPID.N`: a temporary name for `path` that no other writer has
/// (the process id, then a count and the clock within it).
fn tmp_name(path: &Path) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}.{n}{t:09}", std::process::id()));
    PathBuf::from(tmp)
}

/// Creates a temporary file that did not exist, locked for writing (an
/// advisory lock: [`remove_stale`] leaves a locked file alone, whichever
/// process or container holds it).
fn create_locked(tmp: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(tmp)?;
    if !try_lock(&f) {
        return Err(std::io::Error::other("cannot lock a new temporary file"));
    }
    Ok(f)
}

/// Takes the exclusive advisory lock of `f` if no one holds it.
fn try_lock(f: &std::fs::File) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = f;
        true
    }
}

/// Removes temporary files left in `dir` by runs that are gone (a process
/// killed while it decoded): those whose writer's lock is free.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_str().is_some_and(|n| n.contains(".u8.tmp")) {
            continue;
        }
        if let Ok(f) = std::fs::OpenOptions::new().read(true).open(e.path()) {
            if try_lock(&f) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
