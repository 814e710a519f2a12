//! An image folder decoded in the background while it is read (the
//! explorer on a folder not yet cached): a thread decodes the files in
//! order into a growing uint8 store, mapped on the cache file being written
//! (anonymous memory without a cache), and the set is returned at once.
//! Reads wait for their images ([`super::pixels::Growing`]). What decoding
//! one file means is the caller's (`folder.rs`), given as closures.

use super::cache;
use super::pixels::{Bytes, Growing, Pixels};
use crate::error::Result;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first chunk is small, so that the first batches are soon there.
const FIRST_CHUNK: usize = 16;
const CHUNK: usize = 128;

/// Starts decoding `files` (each to `shape` = (c, h, w) bytes by
/// `prepare`) and returns the store at once. A file that does not decode
/// stops the decoding, and reads past it get `bad(file, why)`. When the set
/// is dropped the thread stops (the temporary file removed); when decoding
/// completes, the cache file gets `labels` and its real name.
pub fn decode(
    files: Vec<PathBuf>,
    labels: Vec<u32>,
    shape: (usize, usize, usize),
    cache_path: Option<&Path>,
    prepare: impl Fn(&Path) -> std::result::Result<Vec<u8>, String> + Send + Sync + 'static,
    bad: impl Fn(&Path, &str) -> String + Send + 'static,
) -> Result<Pixels> {
    let img = shape.0 * shape.1 * shape.2;
    let n = files.len();
    let (store, file) = match cache_path.map(|p| (p, cache::GrowingFile::create(p, shape, n))) {
        Some((_, Ok((file, store)))) => (store, Some(file)),
        other => {
            if let Some((p, Err(e))) = other {
                eprintln!(
                    "notice: cannot write the decoded-image cache {} ({e}); working without it (SEMCON_CACHE_DIR chooses another place)",
                    p.display()
                );
            }
            let map = memmap2::MmapMut::map_anon((n * img).max(1))
                .map_err(|e| crate::invalid!("cannot map memory for {n} images: {e}"))?;
            (Growing::new(map, 0, n, img), None)
        }
    };
    let store = Arc::new(Bytes::Growing(store));
    let weak = Arc::downgrade(&store);
    let run = move || {
        let mut start = 0;
        while start < n {
            let Some(store) = weak.upgrade() else {
                return; // the set is gone; `file` removes the temporary file
            };
            let Bytes::Growing(g) = &*store else {
                unreachable!("a growing store")
            };
            let len = if start == 0 { FIRST_CHUNK } else { CHUNK };
            let chunk = &files[start..(start + len).min(n)];
            let out: Vec<_> = chunk.par_iter().map(|f| prepare(f)).collect();
            let mut bytes = Vec::with_capacity(chunk.len() * img);
            for (f, r) in chunk.iter().zip(out) {
                match r {
                    Ok(chw) => bytes.extend_from_slice(&chw),
                    Err(why) => {
                        g.push(&bytes);
                        g.fail(bad(f, &why));
                        return;
                    }
                }
            }
            if !g.push(&bytes) {
                g.fail(STOPPED.into());
                return;
            }
            start += chunk.len();
        }
        if let (Some(file), Some(store)) = (file, weak.upgrade()) {
            if let Bytes::Growing(g) = &*store {
                // Without a cache file the next run decodes again: nothing lost.
                let _ = file.finish(g, &labels);
            }
        }
    };
    let spawned = std::thread::Builder::new()
        .name("semcon-decode".into())
        .spawn({
            let store = Arc::downgrade(&store);
            move || {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
                    if let Some(s) = store.upgrade() {
                        if let Bytes::Growing(g) = &*s {
                            g.fail(STOPPED.into());
                        }
                    }
                }
            }
        });
    spawned.map_err(|e| crate::invalid!("cannot start the decoding thread: {e}"))?;
    Ok(Pixels::U8(store))
}

const STOPPED: &str = "the decoding thread stopped (a bug: please report it)";
