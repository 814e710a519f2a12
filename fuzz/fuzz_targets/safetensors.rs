#![no_main]
//! Fuzz target: semcon's safetensors reader (src/fuzz.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = semcon::fuzz::run("safetensors", data);
});
