//! Where a set's pixel values live ([`Pixels`]): float32 in memory (the
//! small sets and every computed one), or uint8 as decoded (image folders:
//! a quarter of the memory), either in memory or mapped read-only from the
//! decoded-image cache file, so that the pages are the kernel's page cache
//! and not the process's own memory. uint8 values are turned into float32
//! (`v / 255`, the same division every reader uses) only for the images
//! asked, batch by batch.
//!
//! A [`Growing`] store is filled by a decoding thread while it is read
//! (the explorer on a folder not yet cached): a read waits until its
//! images are decoded, and learns of a decoding failure instead of reading
//! pixels that never came.

use std::borrow::Cow;
use std::sync::{Arc, Condvar, Mutex};

/// The pixel values of a set, `n * c * h * w` of them, in [0,1] once read.
#[derive(Clone)]
pub enum Pixels {
    F32(Vec<f32>),
    U8(Arc<Bytes>),
}

/// uint8 values held in memory, mapped from a file, or being decoded.
pub enum Bytes {
    Owned(Vec<u8>),
    /// `len` bytes at `offset` of a read-only mapping.
    Mapped {
        map: memmap2::Mmap,
        offset: usize,
        len: usize,
    },
    Growing(Growing),
}

impl Bytes {
    /// Every value (waiting for a growing store to be complete; what a
    /// failed one never decoded reads as 0).
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Bytes::Growing(g) => {
                let _ = g.wait(g.images);
                g.slice(0, g.len())
            }
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Bytes::Growing(g) => g.len(),
            b => b.as_slice().len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values `a..b`, once they are there; an error when a growing store's
    /// decoding failed before them.
    pub fn range(&self, a: usize, b: usize) -> Result<&[u8], String> {
        match self {
            Bytes::Growing(g) => {
                g.wait(b.div_ceil(g.image_len.max(1)))?;
                Ok(g.slice(a, b))
            }
            b_ => Ok(&b_.as_slice()[a..b]),
        }
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self, Bytes::Mapped { .. } | Bytes::Growing(_))
    }
}

/// A uint8 store filled in order, image by image, by one decoding thread
/// while others read what is done. The memory is a mapping: of the cache
/// file being written (the kernel's page cache, not the process's memory),
/// or anonymous when there is no cache.
pub struct Growing {
    map: memmap2::MmapMut,
    /// The mapping's start, taken once from `&mut map`: every access goes
    /// through it (reads before `ready`, the one writer after it).
    base: *mut u8,
    /// Where the pixels start in the mapping.
    offset: usize,
    images: usize,
    image_len: usize,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    ready: usize,
    failed: Option<String>,
}

// SAFETY: the writer writes only images at and after `ready`, readers read
// only before it, and `ready` moves under the mutex (which orders the
// writes before the reads); the mapping lives as long as the store.
unsafe impl Sync for Growing {}
unsafe impl Send for Growing {}

impl Growing {
    /// A store for `images` images of `image_len` bytes at `offset` of `map`.
    pub fn new(
        mut map: memmap2::MmapMut,
        offset: usize,
        images: usize,
        image_len: usize,
    ) -> Growing {
        assert!(
            offset + images * image_len <= map.len(),
            "the mapping holds the images"
        );
        let base = map.as_mut_ptr();
        Growing {
            map,
            base,
            offset,
            images,
            image_len,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.images * self.image_len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// (images decoded, images in all).
    pub fn progress(&self) -> (usize, usize) {
        (self.lock().ready, self.images)
    }
    /// Why decoding stopped, if it failed.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.clone()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Waits until the first `n` images are decoded, or decoding failed
    /// before them.
    fn wait(&self, n: usize) -> Result<(), String> {
        let mut st = self.lock();
        loop {
            if st.ready >= n.min(self.images) {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(why.clone());
            }
            st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
    /// Bytes `a..b` of the pixels: only called for decoded images.
    fn slice(&self, a: usize, b: usize) -> &[u8] {
        assert!(a <= b && b <= self.len());
        // SAFETY: in the mapping (checked above); decoded, so never written again.
        unsafe { std::slice::from_raw_parts(self.base.add(self.offset + a), b - a) }
    }
    /// The next images' bytes (the store's order). Returns false (and
    /// writes nothing) for a partial image, past the end, or after
    /// [`Growing::fail`].
    pub fn push(&self, bytes: &[u8]) -> bool {
        // The lock is held while copying: pushes never overlap, and a
        // reader only ever reads before `ready`, which moves after the copy.
        let mut st = self.lock();
        let n = bytes.len() / self.image_len.max(1);
        if !bytes.len().is_multiple_of(self.image_len.max(1))
            || st.ready + n > self.images
            || st.failed.is_some()
        {
            return false;
        }
        let at = self.offset + st.ready * self.image_len;
        // SAFETY: in the mapping (checked above); past `ready`, so no reader
        // holds these bytes, and no other push runs (the lock).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len());
        }
        st.ready += n;
        drop(st);
        self.done.notify_all();
        true
    }
    /// Decoding stopped, for this reason: readers waiting for images not
    /// decoded get it, and nothing more is pushed.
    pub fn fail(&self, why: String) {
        self.lock().failed.get_or_insert(why);
        self.done.notify_all();
    }
    /// Flushes the mapping into its file (the cache file, once complete).
    pub fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}

/// uint8 to float32 the way every reader does it.
pub fn to_unit(v: &[u8]) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { to_unit_avx2(v) };
    }
    to_unit_any(v)
}

/// [`to_unit`] compiled for AVX2 (eight divisions at a time).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn to_unit_avx2(v: &[u8]) -> Vec<f32> {
    to_unit_any(v)
}

#[inline(always)]
fn to_unit_any(v: &[u8]) -> Vec<f32> {
    // A division, as torchvision's `div(255)`: not a multiplication by 1/255.
    v.iter().map(|&p| p as f32 / 255.0).collect()
}

impl Pixels {
    /// How many values (not images).
    pub fn len(&self) -> usize {
        match self {
            Pixels::F32(v) => v.len(),
            Pixels::U8(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values `a..b` as float32 (borrowed when they are float32 already);
    /// of a growing store, once they are decoded (what a failed decoding
    /// never reached reads as 0: [`Pixels::try_range`] says so instead).
    pub fn range(&self, a: usize, b: usize) -> Cow<'_, [f32]> {
        self.try_range(a, b)
            .unwrap_or_else(|_| Cow::Owned(vec![0.0; b - a]))
    }
    /// [`Pixels::range`], or why a growing store never decoded them.
    pub fn try_range(&self, a: usize, b: usize) -> Result<Cow<'_, [f32]>, String> {
        Ok(match self {
            Pixels::F32(v) => Cow::Borrowed(&v[a..b]),
            Pixels::U8(u) => Cow::Owned(to_unit(u.range(a, b)?)),
        })
    }
    /// Whether reading the first `images` images would not wait: decoded,
    /// or their decoding failed (then the read says why).
    pub fn decoded(&self, images: usize) -> bool {
        match self {
            Pixels::U8(b) => match &**b {
                Bytes::Growing(g) => {
                    let st = g.lock();
                    st.ready >= images.min(g.images) || st.failed.is_some()
                }
                _ => true,
            },
            _ => true,
        }
    }
    /// Of a store being decoded: (images decoded, images in all).
    pub fn decoding(&self) -> Option<(usize, usize)> {
        match self {
            Pixels::U8(b) => match &**b {
                Bytes::Growing(g) => Some(g.progress()),
                _ => None,
            },
            _ => None,
        }
    }
    /// Every value as float32: for the small sets that are worked on whole
    /// (training, the sample panel, tests); large sets go by [`Pixels::range`].
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        self.range(0, self.len())
    }
    /// Every value as float32, owned.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Pixels::F32(v) => v,
            Pixels::U8(u) => to_unit(u.as_slice()),
        }
    }
    /// Whether the values are mapped (from the cache file, or a growing
    /// store's mapping) rather than held in a vector.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Pixels::U8(b) if b.is_mapped())
    }
}

impl From<Vec<f32>> for Pixels {
    fn from(v: Vec<f32>) -> Self {
        Pixels::F32(v)
    }
}

impl Default for Pixels {
    fn default() -> Self {
        Pixels::F32(Vec::new())
    }
}

/// Equal values, whatever the storage.
impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Pixels::U8(a), Pixels::U8(b)) => a.as_slice() == b.as_slice(),
            _ => self.len() == other.len() && self.to_f32() == other.to_f32(),
        }
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pixels::F32(v) => write!(f, "Pixels::F32({} values)", v.len()),
            Pixels::U8(b) => write!(
                f,
                "Pixels::U8({} values{})",
                b.len(),
                if b.is_mapped() { ", mapped" } else { "" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_reads_as_the_readers_division() {
        let u = Pixels::U8(Arc::new(Bytes::Owned(vec![0, 1, 128, 255])));
        let f = Pixels::F32(vec![0.0, 1.0 / 255.0, 128.0 / 255.0, 1.0]);
        assert_eq!(u.range(1, 3).as_ref(), &f.range(1, 3)[..]);
        assert_eq!(u, f);
        assert_ne!(u, Pixels::F32(vec![0.0, 1.0 / 255.0, 0.5, 1.0]));
        assert_eq!(u.into_f32(), f.into_f32());
    }
}
