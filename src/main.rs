//! The `semcon` binary: everything lives in the library; see `semcon::cli`.

/// Activations of a batch are tens of MB: a caching allocator avoids a fresh
/// mmap + page faults for every tensor op (glibc maps blocks above 32 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(semcon::cli::main());
}
