//! The batching loop every batched computation runs in: a device out of
//! memory halves the batch and retries it, an observer may stop the work
//! between batches, and `SEMCON_SIMULATE_OOM_ABOVE` simulates the device
//! running out of memory so the halving is testable without a GPU.

use crate::Result;
use candle_core::{Device, Tensor};

/// Runs `run(start, end)` over `0..n` in batches and appends what it returns.
/// A device out-of-memory error halves the batch and retries it; after each
/// batch `obs(results so far, done, n)` may stop the work (then `None`).
///
/// Every batched command and the explorer's worker go through here, so the
/// halving can be exercised without a GPU: with `SEMCON_SIMULATE_OOM_ABOVE=N`
/// a batch of more than `N` images fails as a GPU out of memory would
/// (`tests/cli_errors.rs`).
pub fn in_batches<T>(
    n: usize,
    batch: usize,
    mut run: impl FnMut(usize, usize) -> Result<Vec<T>>,
    mut obs: impl FnMut(&[T], usize, usize) -> bool,
) -> Result<Option<Vec<T>>> {
    let limit = simulated_oom_limit();
    let mut out = Vec::new();
    let (mut s, mut batch) = (0, batch.max(1));
    while s < n {
        let e = (s + batch).min(n);
        let result = match limit {
            Some(max) if e - s > max => Err(crate::invalid!(
                "simulated out of memory (SEMCON_SIMULATE_OOM_ABOVE={max}, batch {})",
                e - s
            )),
            _ => run(s, e),
        };
        match result {
            Ok(v) => out.extend(v),
            Err(err) if is_oom(&err) && batch > 1 => {
                batch /= 2;
                eprintln!("notice: device out of memory; retrying with batch {batch}");
                continue;
            }
            Err(err) => return Err(err),
        }
        s = e;
        if !obs(&out, s, n) {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// `SEMCON_SIMULATE_OOM_ABOVE`: the largest batch that does not fail with a
/// simulated out-of-memory error (a test hook for the batch halving).
fn simulated_oom_limit() -> Option<usize> {
    std::env::var("SEMCON_SIMULATE_OOM_ABOVE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `f` over `x` in batches on `device` and concatenates the outputs (on
/// the CPU); a device out of memory halves the batch ([`in_batches`]).
pub fn batched(
    x: &Tensor,
    batch: usize,
    device: &Device,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let outs = in_batches(
        x.dim(0)?,
        batch,
        |s, e| {
            let xb = x.narrow(0, s, e - s)?.to_device(device)?;
            Ok(vec![f(&xb)?.to_device(&Device::Cpu)?])
        },
        |_, _, _| true,
    )?
    .unwrap_or_default();
    Ok(Tensor::cat(&outs, 0)?)
}

/// Whether an error is the device running out of memory (then the batch is
/// halved and the batch retried instead of failing).
pub fn is_oom(e: &crate::Error) -> bool {
    let m = e.to_string().to_ascii_lowercase();
    m.contains("out of memory") || m.contains("out_of_memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_recognised() {
        assert!(is_oom(&crate::Error::Invalid(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into()
        )));
        // what the cuDNN network reports (src/model/gpu.rs)
        assert!(is_oom(&crate::Error::Invalid(
            "cuDNN cudnnConvolutionForward failed: CUDNN_STATUS_ALLOC_FAILED (GPU out of memory)"
                .into()
        )));
        assert!(!is_oom(&crate::Error::Invalid("shape mismatch".into())));
    }

    /// The halving loop against a fake device that runs out of memory above
    /// `fits` images: every sample is computed exactly once, in order, with
    /// the batch halved only as often as needed and kept small afterwards.
    #[test]
    fn out_of_memory_halves_the_batch_and_retries() {
        for (n, batch, fits, want_calls) in [
            (
                10,
                8,
                3,
                vec![(0, 8), (0, 4), (0, 2), (2, 4), (4, 6), (6, 8), (8, 10)],
            ),
            (5, 4, 4, vec![(0, 4), (4, 5)]),
            (3, 1, 1, vec![(0, 1), (1, 2), (2, 3)]),
        ] {
            let mut calls = Vec::new();
            let mut seen = Vec::new();
            let out = in_batches(
                n,
                batch,
                |s, e| {
                    calls.push((s, e));
                    if e - s > fits {
                        return Err(crate::invalid!("CUDA_ERROR_OUT_OF_MEMORY, out of memory"));
                    }
                    Ok((s..e).map(|i| i * 10).collect())
                },
                |so_far, done, total| {
                    seen.push((so_far.len(), done, total));
                    true
                },
            )
            .unwrap()
            .unwrap();
            assert_eq!(out, (0..n).map(|i| i * 10).collect::<Vec<_>>());
            assert_eq!(calls, want_calls, "n {n} batch {batch} fits {fits}");
            assert!(seen
                .iter()
                .all(|&(len, done, total)| len == done && total == n));
            assert_eq!(seen.last().unwrap().1, n);
        }
    }

    #[test]
    fn other_errors_and_oom_at_batch_one_are_returned() {
        let r: Result<Option<Vec<u8>>> = in_batches(
            4,
            4,
            |_, _| Err(crate::invalid!("shape mismatch")),
            |_, _, _| true,
        );
        assert!(r.unwrap_err().to_string().contains("shape mismatch"));
        let mut calls = 0;
        let r: Result<Option<Vec<u8>>> = in_batches(
            4,
            2,
            |_, _| {
                calls += 1;
                Err(crate::invalid!("out of memory"))
            },
            |_, _, _| true,
        );
        assert!(r.unwrap_err().to_string().contains("out of memory"));
        assert_eq!(calls, 2, "batch 2, then 1, then give up");
    }

    #[test]
    fn observer_can_cancel_between_batches() {
        let r = in_batches(10, 3, |s, e| Ok((s..e).collect()), |_, done, _| done < 6).unwrap();
        assert!(r.is_none());
    }
}
