//! Device selection: `auto`, `cpu`, `cuda`, `cuda:N`, and the GPU's name for
//! the status line.
//!
//! A CUDA build opens the NVIDIA driver and the CUDA libraries when a GPU is
//! first asked for (see `scripts/build_cuda.sh`: cudarc's dynamic loading), so
//! the same binary starts on a machine without them. Before candle touches
//! CUDA we open those libraries ourselves: a missing one becomes a clear
//! message (and, for `auto`, the CPU) instead of cudarc's panic.

use crate::error::Result;
use candle_core::Device;

/// Parses a device spec. `auto` takes the GPU when this build has CUDA and a
/// GPU answers, else the CPU with a one-line notice on stderr saying why.
pub fn select(spec: &str) -> Result<Device> {
    select_arg(Some(spec))
}

/// `--device`, where leaving it out means `auto` — except that a build without
/// CUDA then takes the CPU silently (it cannot have a GPU; an explicit
/// `--device auto` says so).
pub fn select_arg(spec: Option<&str>) -> Result<Device> {
    let (device, notice) = choose_arg(spec)?;
    if let Some(n) = notice {
        eprintln!("notice: {n}");
    }
    Ok(device)
}

/// As [`select_arg`], returning the notice instead of printing it (the
/// explorer shows it in its message line).
pub fn choose_arg(spec: Option<&str>) -> Result<(Device, Option<String>)> {
    match spec {
        None if !candle_core::utils::cuda_is_available() => Ok((Device::Cpu, None)),
        None => choose("auto"),
        Some(s) => choose(s),
    }
}

/// An explicit spec: the device, and the notice when `auto` fell back.
fn choose(spec: &str) -> Result<(Device, Option<String>)> {
    match spec {
        "cpu" => Ok((Device::Cpu, None)),
        "auto" => {
            if !candle_core::utils::cuda_is_available() {
                return Ok((
                    Device::Cpu,
                    Some(
                        "this semcon build has no CUDA (see docs/gpu.md: scripts/build_cuda.sh); running on the CPU"
                            .into(),
                    ),
                ));
            }
            if let Some((why, hint)) = cuda_libraries_missing() {
                return Ok((
                    Device::Cpu,
                    Some(format!("{why}; running on the CPU ({hint})")),
                ));
            }
            match Device::new_cuda(0) {
                Ok(d) => Ok((d, None)),
                Err(e) => Ok((
                    Device::Cpu,
                    Some(format!(
                        "no usable GPU ({}); running on the CPU",
                        one_line(&e.to_string())
                    )),
                )),
            }
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let n: usize = s
                .strip_prefix("cuda:")
                .unwrap_or("0")
                .parse()
                .map_err(|_| {
                    crate::invalid!("invalid device '{s}' (expected auto, cpu, cuda or cuda:N)")
                })?;
            if !candle_core::utils::cuda_is_available() {
                return Err(crate::invalid!(
                    "device '{s}': this semcon binary was built without CUDA (rebuild with --features cuda, or use --device cpu)"
                ));
            }
            if let Some((why, hint)) = cuda_libraries_missing() {
                return Err(crate::invalid!("device '{s}': {why} ({hint}); {TO_CPU}"));
            }
            Device::new_cuda(n)
                .map_err(|e| {
                    crate::invalid!(
                        "device '{s}': cannot open the GPU: {}; {TO_CPU}",
                        one_line(&e.to_string())
                    )
                })
                .map(|d| (d, None))
        }
        s => Err(crate::invalid!(
            "invalid device '{s}' (expected auto, cpu, cuda or cuda:N)"
        )),
    }
}

/// How to get the CPU instead, for errors about an explicit GPU.
const TO_CPU: &str = "--device auto or cpu runs on the CPU";

/// The first line of an error (candle appends backtraces on some errors).
fn one_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// The shared libraries a CUDA build needs at run time: what to call them in a
/// message, and the name cudarc loads them by.
#[cfg(feature = "cuda")]
const CUDA_LIBRARIES: &[(&str, &str)] = &[
    ("the NVIDIA driver", "cuda"),
    ("cuBLAS", "cublas"),
    ("cuBLASLt", "cublasLt"),
    ("cuRAND", "curand"),
    ("NVRTC", "nvrtc"),
    #[cfg(feature = "cudnn")]
    ("cuDNN", "cudnn"),
];

/// File names tried for `lib{name}`: the ones cudarc tries on Linux (the
/// unversioned name, then the sonames of CUDA 13 down to the driver's `.1`).
#[cfg(feature = "cuda")]
fn library_candidates(name: &str) -> Vec<String> {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let mut v = vec![format!("{DLL_PREFIX}{name}{DLL_SUFFIX}")];
    for major in ["13", "12", "11", "10", "9", "1"] {
        v.push(format!("{DLL_PREFIX}{name}{DLL_SUFFIX}.{major}"));
    }
    v
}

/// `None` when every library a CUDA build needs opens; else which are
/// missing ("CUDA unavailable: cannot load ...") and what to check. The opened
/// libraries stay loaded (probed once), so candle's own loading later finds
/// them already mapped.
#[cfg(feature = "cuda")]
pub fn cuda_libraries_missing() -> Option<(String, &'static str)> {
    use std::sync::OnceLock;
    type Probe = (Vec<libloading::Library>, Option<(String, &'static str)>);
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let mut open = Vec::new();
            let mut missing = Vec::new();
            for &(what, name) in CUDA_LIBRARIES {
                let found = library_candidates(name).into_iter().find_map(|file| {
                    // SAFETY: loading a CUDA library runs only its initialisers.
                    unsafe { libloading::Library::new(&file) }.ok()
                });
                match found {
                    Some(lib) => open.push(lib),
                    None => missing.push(format!("{what} (lib{name}.so)")),
                }
            }
            let why = (!missing.is_empty()).then(|| {
                // Without the driver the rest hardly matters: name it alone.
                let driver = missing.iter().any(|m| m.starts_with("the NVIDIA driver"));
                if driver {
                    missing.truncate(1);
                }
                let hint = if driver {
                    "is the NVIDIA driver installed? in a container, start it with the GPU passed in"
                } else {
                    "add the CUDA libraries' folder to LD_LIBRARY_PATH"
                };
                (format!("CUDA unavailable: cannot load {}", missing.join(", ")), hint)
            });
            (open, why)
        })
        .1
        .clone()
}

/// Builds without CUDA never get this far (`cuda_is_available` is false).
#[cfg(not(feature = "cuda"))]
pub fn cuda_libraries_missing() -> Option<(String, &'static str)> {
    None
}

/// A short human name for the status line.
pub fn describe(d: &Device) -> String {
    match d {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_d) => {
            // The GPU's own name ("cuda:0 NVIDIA H100 80GB HBM3") where the driver says it.
            #[cfg(feature = "cuda")]
            {
                let ctx = _d.cuda_stream().context().clone();
                if let Ok(name) = ctx.name() {
                    return format!("cuda:{} {name}", ctx.ordinal());
                }
            }
            "cuda".to_string()
        }
        Device::Metal(_) => "metal".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(select("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda:", ""] {
            let e = select(bad).unwrap_err().to_string();
            assert!(e.contains("expected auto, cpu, cuda or cuda:N"), "{e}");
        }
        assert_eq!(one_line("a\nb"), "a");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cpu_build() {
        // No --device: the CPU, silently (this build cannot have a GPU) ...
        let (d, notice) = choose_arg(None).unwrap();
        assert!(d.is_cpu() && notice.is_none());
        // ... an explicit auto says why it is the CPU.
        let (d, notice) = choose_arg(Some("auto")).unwrap();
        assert!(d.is_cpu());
        assert!(notice.unwrap().contains("no CUDA"));
        let e = select("cuda:1").unwrap_err().to_string();
        assert!(e.contains("built without CUDA"), "{e}");
    }
}
