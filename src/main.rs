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

/// `mi_option_purge_delay` in mimalloc v2's `mimalloc.h` (libmimalloc-sys
/// 0.1.49, pinned in Cargo.lock).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Freed memory stays with the process for the next tensor of the same
/// size, instead of being returned to the OS 10 ms later and faulted in
/// again, page by page, by the next op (about 15% of a ConvNeXt forward on
/// 2 cores, measured). Peak memory is unchanged; memory is not returned
/// after a peak. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain calls into the linked allocator; an option index it
    // does not know is ignored by mimalloc.
    unsafe {
        if mi_option_get(MI_OPTION_PURGE_DELAY) == 10 {
            // still the documented default: the index is the purge delay
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

fn main() {
    keep_freed_memory();
    std::process::exit(semcon::cli::main());
}
