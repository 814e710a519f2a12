//! File helpers the readers share: reading a whole file with its path in
//! the error, overflow-checked header sizes, pickle detection, and writing
//! an output file atomically (a temporary file renamed into place).

use crate::error::{Error, Result};
use std::path::Path;

/// Whether `p` is a file holding a bare pickle stream (protocol 2 and later
/// start with the PROTO opcode 0x80): CIFAR's python version, or torch.save's
/// legacy format.
pub fn is_pickle(p: &Path) -> bool {
    let mut b = [0u8; 1];
    p.is_file()
        && std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .is_ok()
        && b[0] == 0x80
}

pub fn read_file(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::io(p, e))
}

/// The product of `dims`, `None` when it overflows (sizes from a file header
/// can announce more than a usize holds).
pub fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Writes `out` through `write` into a temporary file next to it
/// (`NAME.EXT.tmp`), then renames it into place; the temporary file is
/// removed when either step fails, so no half-written file is left.
pub fn write_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tmp = out.with_extension(format!("{ext}.tmp"));
    write(&tmp)
        .and_then(|_| std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e)))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .map_err(|e| Error::Write {
            path: out.to_path_buf(),
            source: Box::new(e),
        })
}
