//! The `semcon` binary: everything lives in the library; see `semcon::cli`.

/// Activations of a batch are tens of MB: a caching allocator avoids a fresh
/// mmap + page faults for every tensor op (glibc maps blocks above 32 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    // mimalloc's own API (the C library the `mimalloc` crate links).
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in `mimalloc.h`: the same index in mimalloc v2
/// and v3 (libmimalloc-sys 0.1.49, pinned in Cargo.lock, builds v3 unless
/// its `v2` feature is asked for).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// The purge delay's documented defaults: 10 ms in v2, 1000 ms in v3.
const PURGE_DELAY_DEFAULTS: [std::ffi::c_long; 2] = [10, 1000];

/// Freed memory stays with the process for the next tensor of the same
/// size, instead of being returned to the OS after a delay and faulted in
/// again, page by page, by the next op (ViT-B/16's forward + input
/// gradient at batch 32 on 2 cores: 70,000 page faults and 10.4 s without,
/// 2,300 and 7.8 s with, measured 2026-12-03). Memory is not returned after
/// a peak: `bench/memory.py`'s first read of a folder peaks 40-80 MiB
/// higher, flat in the number of images. `MIMALLOC_PURGE_DELAY` in the
/// environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain calls into the linked allocator; an option index it
    // does not know is ignored by mimalloc.
    unsafe {
        if PURGE_DELAY_DEFAULTS.contains(&mi_option_get(MI_OPTION_PURGE_DELAY)) {
            // still a documented default: the index is the purge delay
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() {
    keep_freed_memory();
    std::process::exit(semcon::cli::main());
}

#[cfg(test)]
mod tests {
    /// The option index and its default match the mimalloc this binary
    /// links: after the call the purge delay reads -1 (a wrong index or a
    /// default the code does not know would leave it unchanged).
    #[test]
    fn freed_memory_is_kept() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        super::keep_freed_memory();
        // SAFETY: a plain read of an allocator option.
        let delay = unsafe { super::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, -1);
    }
}
