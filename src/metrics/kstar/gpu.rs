//! The row scan of the blocked k* search on a CUDA GPU, for euclidean and
//! cosine distances: the device computes the Gram block (cuBLAS, float32)
//! and one kernel per block settles every row it can with the same rigorous
//! error bounds as the CPU scan, so the `rows x n` block never leaves the GPU.
//!
//! Per row `i` the kernel finds `amin`, the smallest float32 approximation
//! to another class, then counts same-class samples whose bound interval lies
//! entirely below `amin - S_i` ("sure": certainly closer than the nearest
//! other-class sample, whose exact distance is within `S_i = e_i + max e` of
//! `amin`) and those whose interval reaches into `[amin - S_i, amin + S_i]`
//! ("maybe"). A row with no "maybe" has k* = 1 + sure exactly; the others
//! (near ties, NaN) are computed in float64 on the CPU from the definition.

use super::search::{self, Data};
use super::{Element, Metric};
use crate::error::Result;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;
use std::sync::OnceLock;
use std::time::Instant;

const SRC: &str = r#"
extern "C" __global__ void kstar_scan(
    const float* __restrict__ g, int n, int s0, int cosine,
    const float* __restrict__ sq, const float* __restrict__ e, float emax,
    const unsigned* __restrict__ labels,
    unsigned* __restrict__ sure, unsigned* __restrict__ maybe)
{
    __shared__ float smin[32];
    __shared__ unsigned sa[32];
    __shared__ unsigned sb[32];
    const int r = blockIdx.x, i = s0 + r;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    const float* row = g + (size_t)r * (size_t)n;
    const unsigned yi = labels[i];
    const float sqi = cosine ? 0.0f : sq[i];
    float amin = __int_as_float(0x7f800000);
    unsigned others = 0, nan = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        if (labels[j] == yi) continue;
        float a = cosine ? 1.0f - row[j] : (sqi + sq[j]) - 2.0f * row[j];
        others = 1;
        if (isnan(a)) nan = 1; else amin = fminf(amin, a);
    }
    for (int o = 16; o > 0; o >>= 1) {
        amin = fminf(amin, __shfl_down_sync(0xffffffffu, amin, o));
        others |= __shfl_down_sync(0xffffffffu, others, o);
        nan |= __shfl_down_sync(0xffffffffu, nan, o);
    }
    if (lane == 0) { smin[wid] = amin; sa[wid] = others; sb[wid] = nan; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < nw; ++w) { smin[0] = fminf(smin[0], smin[w]); sa[0] |= sa[w]; sb[0] |= sb[w]; }
    }
    __syncthreads();
    amin = smin[0]; others = sa[0]; nan = sb[0];
    __syncthreads();
    const float ei = e[i];
    const float S = ei + emax;
    const float margin = fabsf(amin) * 1e-5f;
    const float lo = amin - S - margin, hi = amin + S + margin;
    unsigned cs = 0, cm = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        if (labels[j] != yi || j == i) continue;
        float a = cosine ? 1.0f - row[j] : (sqi + sq[j]) - 2.0f * row[j];
        float rr = ei + e[j];
        if (a + rr < lo) cs++;
        else if (!(a - rr > hi)) cm++;
    }
    for (int o = 16; o > 0; o >>= 1) {
        cs += __shfl_down_sync(0xffffffffu, cs, o);
        cm += __shfl_down_sync(0xffffffffu, cm, o);
    }
    if (lane == 0) { sa[wid] = cs; sb[wid] = cm; }
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned ts = 0, tm = 0;
        for (int w = 0; w < nw; ++w) { ts += sa[w]; tm += sb[w]; }
        sure[r] = ts;
        maybe[r] = !others ? 0xffffffffu : (tm + nan);
    }
}
"#;

fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        use candle_core::cuda_backend::cudarc::nvrtc;
        let opts = nvrtc::CompileOptions {
            // exactly the float32 operations the error bound assumes
            fmad: Some(false),
            ..Default::default()
        };
        nvrtc::compile_ptx_with_opts(SRC, opts)
            .map(|p| p.to_src())
            .map_err(|e| format!("compiling the k* kernel with NVRTC: {e:?}"))
    })
    .as_ref()
    .map(|s| s.as_str())
    .map_err(|e| crate::invalid!("{e}"))
}

/// Whether the GPU scan handles this search.
pub(super) fn applies(metric: Metric, device: &Device) -> bool {
    device.is_cuda() && matches!(metric, Metric::Euclidean | Metric::Cosine)
}

/// Values of a Gram block handed to the GPU at once (2^28 f32 = 1 GiB).
const GPU_BLOCK_ELEMS: usize = 1 << 28;

/// Prints phase timings on stderr (`SEMCON_KSTAR_TRACE=1`), the device
/// synchronised at each mark.
struct Trace(Option<(Instant, Device)>);

impl Trace {
    fn new(device: &Device) -> Trace {
        Trace(std::env::var_os("SEMCON_KSTAR_TRACE").map(|_| (Instant::now(), device.clone())))
    }
    fn mark(&self, what: &str) {
        if let Some((t, dev)) = &self.0 {
            let _ = dev.synchronize();
            eprintln!("k* trace: {what}: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        }
    }
}

/// The blocked search of [`search::blocked`] with the scan on the GPU.
pub(super) fn blocked<T: Element>(d: &Data<T>, block_rows: usize, device: &Device) -> Result<Vec<u32>> {
    let (n, dim, metric) = (d.n, d.dim, d.metric);
    let trace = Trace::new(device);
    let (xt, size) = if metric == Metric::Euclidean {
        prepare_euclidean(d, device)?
    } else {
        let p = search::prepare(d);
        (Tensor::from_vec(p.xs, (n, dim), device)?, p.size)
    };
    trace.mark("prepare");
    let (coef, floor) = search::bound_coefficients(metric, dim, device);
    let e: Vec<f64> = size.iter().map(|&s| coef * s + floor / 2.0).collect();
    let sq: Vec<f32> = match metric {
        Metric::Euclidean => size.iter().map(|&v| v as f32).collect(),
        _ => Vec::new(),
    };
    let gs = GpuScan::new(d, &sq, &e, device)?;
    trace.mark("scan constants");
    let rows = block_rows.clamp(1, (GPU_BLOCK_ELEMS / n).max(1));
    let mut out = vec![0u32; n];
    let mut s = 0;
    while s < n {
        let b = rows.min(n - s);
        let values = search::block_values(metric, &xt, s, b)?;
        gs.rows(d, &values, s, &mut out[s..s + b])?;
        s += b;
    }
    trace.mark("blocks");
    Ok(out)
}

/// [`search::prepare`] for euclidean distances on the GPU (the same values:
/// centred in float64, scaled by a power of two, rounded to float32; squared
/// norms of the float32 rows summed in float64).
fn prepare_euclidean<T: Element>(d: &Data<T>, device: &Device) -> Result<(Tensor, Vec<f64>)> {
    let x = T::upload(d.x, d.n, d.dim, device)?.to_dtype(DType::F64)?;
    let xc = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let big = xc.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
    let scale = if big > 0.0 {
        2f64.powi((-(big.log2().floor() as i32) - 1).clamp(-1000, 1000))
    } else {
        1.0
    };
    let xs = (xc * scale)?.to_dtype(DType::F32)?;
    let size = xs.to_dtype(DType::F64)?.sqr()?.sum(1)?.to_vec1::<f64>()?;
    Ok((xs, size))
}

/// Per-run device constants of the scan.
pub(super) struct GpuScan {
    sq: Tensor,
    e: Tensor,
    emax: f32,
    labels: Tensor,
    sizes: std::collections::HashMap<u32, u32>,
}

impl GpuScan {
    pub(super) fn new<T: Element>(d: &Data<T>, sq: &[f32], e: &[f64], device: &Device) -> Result<GpuScan> {
        let labels = d.labels;
        // float32 bounds rounded up
        let up = |v: f64| (v * (1.0 + 1e-6)) as f32;
        let ef: Vec<f32> = e.iter().map(|&v| up(v)).collect();
        let emax = ef.iter().fold(0f32, |a, &b| a.max(b));
        let sq = if sq.is_empty() {
            vec![0f32; labels.len()]
        } else {
            sq.to_vec()
        };
        Ok(GpuScan {
            sq: Tensor::from_vec(sq, labels.len(), device)?,
            e: Tensor::from_vec(ef, labels.len(), device)?,
            emax,
            labels: Tensor::from_slice(labels, labels.len(), device)?,
            sizes: d.class_sizes(),
        })
    }

    /// k* of rows `s..s+b` from their Gram block `g` (`b x n`, on the GPU).
    pub(super) fn rows<T: Element>(
        &self,
        d: &Data<T>,
        g: &Tensor,
        s: usize,
        out: &mut [u32],
    ) -> Result<()> {
        let (b, n) = g.dims2()?;
        let Device::Cuda(dev) = g.device() else {
            return Err(crate::invalid!("the k* GPU scan needs a CUDA tensor"));
        };
        let func = dev.get_or_load_custom_func("kstar_scan", "semcon_kstar", ptx()?)?;
        let stream = dev.cuda_stream();
        let mut sure = stream
            .alloc_zeros::<u32>(b)
            .map_err(|e| crate::invalid!("CUDA: {e:?}"))?;
        let mut maybe = stream
            .alloc_zeros::<u32>(b)
            .map_err(|e| crate::invalid!("CUDA: {e:?}"))?;
        {
            let g = g.contiguous()?;
            let (gs, gl) = g.storage_and_layout();
            let (ss, _) = self.sq.storage_and_layout();
            let (es, _) = self.e.storage_and_layout();
            let (ls, _) = self.labels.storage_and_layout();
            let (Storage::Cuda(gs), Storage::Cuda(ss), Storage::Cuda(es), Storage::Cuda(ls)) =
                (&*gs, &*ss, &*es, &*ls)
            else {
                return Err(crate::invalid!("the k* GPU scan needs CUDA tensors"));
            };
            let go = gl
                .contiguous_offsets()
                .ok_or_else(|| crate::invalid!("non-contiguous Gram block"))?
                .0;
            let gv = gs.as_cuda_slice::<f32>()?.slice(go..);
            let (sqv, ev, lv) = (
                ss.as_cuda_slice::<f32>()?,
                es.as_cuda_slice::<f32>()?,
                ls.as_cuda_slice::<u32>()?,
            );
            let (n_i, s_i, cos) = (
                n as i32,
                s as i32,
                i32::from(d.metric == Metric::Cosine),
            );
            let mut lb = func.builder();
            lb.arg(&gv)
                .arg(&n_i)
                .arg(&s_i)
                .arg(&cos)
                .arg(sqv)
                .arg(ev)
                .arg(&self.emax)
                .arg(lv)
                .arg(&mut sure)
                .arg(&mut maybe);
            let cfg = LaunchConfig {
                grid_dim: (b as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            unsafe { lb.launch(cfg) }.map_err(|e| crate::invalid!("CUDA: {e:?}"))?;
        }
        let sure = stream
            .clone_dtoh(&sure)
            .map_err(|e| crate::invalid!("CUDA: {e:?}"))?;
        let maybe = stream
            .clone_dtoh(&maybe)
            .map_err(|e| crate::invalid!("CUDA: {e:?}"))?;
        let sizes = &self.sizes;
        out.par_iter_mut()
            .enumerate()
            .for_each(|(r, k)| {
                let i = s + r;
                *k = match maybe[r] {
                    u32::MAX => sizes[&d.labels[i]],
                    0 => 1 + sure[r],
                    _ => exact_row(d, i),
                }
            });
        Ok(())
    }
}

/// k* of row `i` in float64 from the definition (near ties only).
fn exact_row<T: Element>(d: &Data<T>, i: usize) -> u32 {
    let yi = d.labels[i];
    let mut t = f64::INFINITY;
    let mut others = false;
    for j in 0..d.n {
        if d.labels[j] != yi {
            others = true;
            let x = d.exact(i, j);
            if x < t {
                t = x;
            }
        }
    }
    if !others {
        return d.labels.iter().filter(|&&y| y == yi).count() as u32;
    }
    let closer = (0..d.n)
        .filter(|&j| j != i && d.labels[j] == yi && d.exact(i, j) < t)
        .count();
    1 + closer as u32
}
