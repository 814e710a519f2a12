//! The values of a candle CPU storage as a typed slice: what every custom
//! op's `cpu_fwd` hands its kernel.

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// The values of `s` laid out by `l` as `T`, which must be contiguous;
/// `op` names the kernel in the error.
pub(crate) fn values<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&T::cpu_storage_as_slice(s)?[a..b]),
        None => candle_core::bail!("{op}: non-contiguous argument"),
    }
}
