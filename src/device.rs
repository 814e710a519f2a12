//! Device selection: `auto`, `cpu`, `cuda`, `cuda:N`.

use crate::error::Result;
use candle_core::Device;

/// Parses a device spec. `auto` takes the GPU when this build has CUDA and a
/// GPU answers, else the CPU with a one-line notice on stderr.
pub fn select(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                match Device::new_cuda(0) {
                    Ok(d) => return Ok(d),
                    Err(e) => eprintln!("notice: no usable GPU ({e}); running on the CPU"),
                }
            }
            Ok(Device::Cpu)
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
                    "device '{s}': this semcon binary was built without CUDA (rebuild with --features cuda)"
                ));
            }
            Device::new_cuda(n)
                .map_err(|e| crate::invalid!("device '{s}': cannot open the GPU: {e}"))
        }
        s => Err(crate::invalid!(
            "invalid device '{s}' (expected auto, cpu, cuda or cuda:N)"
        )),
    }
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
