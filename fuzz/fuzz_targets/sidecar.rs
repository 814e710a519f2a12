#![no_main]
//! Fuzz target: semcon's sidecar reader (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = semcon::fuzz::run("sidecar", data);
});
