//! Where a set's pixel values live ([`Pixels`]): float32 in memory (the
//! small sets and every computed one), or uint8 as decoded (image folders:
//! a quarter of the memory), either in memory or mapped read-only from the
//! decoded-image cache file, so that the pages are the kernel's page cache
//! and not the process's own memory. uint8 values are turned into float32
//! (`v / 255`, the same division every reader uses) only for the images
//! asked, batch by batch.

use std::borrow::Cow;
use std::sync::Arc;

/// The pixel values of a set, `n * c * h * w` of them, in [0,1] once read.
#[derive(Clone)]
pub enum Pixels {
    F32(Vec<f32>),
    U8(Arc<Bytes>),
}

/// uint8 values held in memory or mapped from a file.
pub enum Bytes {
    Owned(Vec<u8>),
    /// `len` bytes at `offset` of a read-only mapping.
    Mapped {
        map: memmap2::Mmap,
        offset: usize,
        len: usize,
    },
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped { map, offset, len } => &map[*offset..*offset + *len],
        }
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self, Bytes::Mapped { .. })
    }
}

/// uint8 to float32 the way every reader does it.
pub fn to_unit(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&p| p as f32 / 255.0).collect()
}

impl Pixels {
    /// How many values (not images).
    pub fn len(&self) -> usize {
        match self {
            Pixels::F32(v) => v.len(),
            Pixels::U8(b) => b.as_slice().len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values `a..b` as float32 (borrowed when they are float32 already).
    pub fn range(&self, a: usize, b: usize) -> Cow<'_, [f32]> {
        match self {
            Pixels::F32(v) => Cow::Borrowed(&v[a..b]),
            Pixels::U8(u) => Cow::Owned(to_unit(&u.as_slice()[a..b])),
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
    /// Whether the values are mapped from a file (not held in memory).
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
                b.as_slice().len(),
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
