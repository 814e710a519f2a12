//! The blocked k* search on a CUDA GPU for euclidean and cosine distances:
//! the device computes float32 Gram blocks (cuBLAS) and CUDA kernels
//! (compiled once with NVRTC) settle every row they can with the same
//! rigorous error bounds as the CPU scan, so no block leaves the GPU.
//!
//! Per row `i`: `amin`, the smallest float32 approximation to another class;
//! then the same-class samples whose bound interval lies entirely below
//! `amin - S_i` ("sure": certainly closer than the nearest other-class
//! sample, whose exact distance is within `S_i = e_i + max e` of `amin`) and
//! those whose interval reaches into `[amin - S_i, amin + S_i]` ("maybe"). A
//! row with no "maybe" has k* = 1 + sure exactly; the others (near ties, NaN)
//! are computed in float64 on the CPU from the definition.
//!
//! When the whole Gram matrix is one block, one kernel does both passes per
//! row. Otherwise the Gram matrix is symmetric, so `amin` comes from the
//! upper triangle of blocks only (each block scanned along its rows and its
//! columns, minima combined atomically), and the counts from each class's
//! own Gram matrix (same-class pairs only): about half the multiply-adds.

use super::search::{self, Data};
use super::types::{Element, Metric};
use crate::error::Result;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

const SRC: &str = r#"
#define INF __int_as_float(0x7f800000)
__device__ __forceinline__ unsigned fkey(float f) {
    unsigned k = __float_as_uint(f);
    return (k & 0x80000000u) ? ~k : (k | 0x80000000u);
}
__device__ __forceinline__ float funkey(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ float approx(int cosine, float sqi, float sqj, float g) {
    return cosine ? 1.0f - g : (sqi + sqj) - 2.0f * g;
}
// Block-wide min / or / sums (blockDim.x a multiple of 32, at most 1024).
__device__ float block_min(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_down_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (threadIdx.x == 0) for (int w = 1; w < (blockDim.x >> 5); ++w) sh[0] = fminf(sh[0], sh[w]);
    __syncthreads();
    return sh[0];
}
__device__ unsigned block_sum(unsigned v, unsigned* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (threadIdx.x == 0) for (int w = 1; w < (blockDim.x >> 5); ++w) sh[0] += sh[w];
    __syncthreads();
    return sh[0];
}
// Same-class counts of row i against the row `row` of Gram values whose
// column c is sample idx[c] (idx null: sample j0 + c), given amin.
__device__ void count_row(const float* row, int cols, int j0, const unsigned* idx, int i,
                          int cosine, const float* sq, const float* e, float emax,
                          const unsigned* labels, float am, unsigned* sure, unsigned* maybe,
                          unsigned* shu) {
    const unsigned yi = labels[i];
    const float sqi = cosine ? 0.0f : sq[i], ei = e[i], S = ei + emax;
    const float margin = fabsf(am) * 1e-5f, lo = am - S - margin, hi = am + S + margin;
    unsigned cs = 0, cm = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        int j = idx ? (int)idx[c] : j0 + c;
        if (j == i || labels[j] != yi) continue;
        float a = approx(cosine, sqi, cosine ? 0.0f : sq[j], row[c]);
        float rr = ei + e[j];
        if (a + rr < lo) cs++;
        else if (!(a - rr > hi)) cm++;
    }
    cs = block_sum(cs, shu);
    cm = block_sum(cm, shu);
    if (threadIdx.x == 0) { sure[i] = cs; maybe[i] = cm; }
}
// The smallest approximation from sample i to another class over the row
// `row` of Gram values whose column c is sample j0 + c (block-wide; every
// thread gets it); NaN approximations are flagged in *nan instead.
__device__ float other_min(const float* row, int cols, int j0, int i, int cosine,
                           const float* sq, const unsigned* labels, unsigned* nan,
                           float* shf, unsigned* shu) {
    const unsigned yi = labels[i];
    const float sqi = cosine ? 0.0f : sq[i];
    float m = INF;
    unsigned bad = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        int j = j0 + c;
        if (labels[j] == yi) continue;
        float a = approx(cosine, sqi, cosine ? 0.0f : sq[j], row[c]);
        if (isnan(a)) bad = 1; else m = fminf(m, a);
    }
    m = block_min(m, shf);
    *nan = block_sum(bad, shu);
    return m;
}
// Whole rows s0.. (g: rows x n): amin, then the counts.
extern "C" __global__ void kstar_scan(const float* g, int n, int s0, int cosine,
    const float* sq, const float* e, float emax, const unsigned* labels,
    unsigned* amin, unsigned* bad, unsigned* sure, unsigned* maybe) {
    __shared__ float shf[32];
    __shared__ unsigned shu[32];
    const int i = s0 + blockIdx.x;
    const float* row = g + (size_t)blockIdx.x * (size_t)n;
    unsigned nan;
    const float m = other_min(row, n, 0, i, cosine, sq, labels, &nan, shf, shu);
    if (threadIdx.x == 0) { amin[i] = fkey(m); if (nan) bad[i] = 1; }
    count_row(row, n, 0, 0, i, cosine, sq, e, emax, labels, m, sure, maybe, shu);
}
// Pass 1 of the symmetric search, along the rows of block (i0.., j0..).
extern "C" __global__ void kstar_rowmin(const float* g, int cols, int i0, int j0, int cosine,
    const float* sq, const unsigned* labels, unsigned* amin, unsigned* bad) {
    __shared__ float shf[32];
    __shared__ unsigned shu[32];
    const int i = i0 + blockIdx.x;
    const float* row = g + (size_t)blockIdx.x * (size_t)cols;
    unsigned nan;
    const float m = other_min(row, cols, j0, i, cosine, sq, labels, &nan, shf, shu);
    if (threadIdx.x == 0) { atomicMin(&amin[i], fkey(m)); if (nan) bad[i] = 1; }
}
// Pass 1 along the columns: thread c is sample j0 + c, over the rows
// blockIdx.y * 64 .. + 64 of the block.
extern "C" __global__ void kstar_colmin(const float* g, int rows, int cols, int i0, int j0, int cosine,
    const float* sq, const unsigned* labels, unsigned* amin, unsigned* bad) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int j = j0 + c;
    const unsigned yj = labels[j];
    const float sqj = cosine ? 0.0f : sq[j];
    float m = INF;
    unsigned nan = 0;
    const int r1 = min(rows, (int)(blockIdx.y + 1) * 64);
    for (int r = blockIdx.y * 64; r < r1; ++r) {
        int i = i0 + r;
        if (labels[i] == yj) continue;
        float a = approx(cosine, cosine ? 0.0f : sq[i], sqj, g[(size_t)r * (size_t)cols + c]);
        if (isnan(a)) nan = 1; else m = fminf(m, a);
    }
    atomicMin(&amin[j], fkey(m));
    if (nan) bad[j] = 1;
}
// Pass 2: rows r0.. of one class's Gram block (columns: the class, idx).
extern "C" __global__ void kstar_count(const float* g, int cols, int r0, const unsigned* idx,
    int cosine, const float* sq, const float* e, float emax, const unsigned* labels,
    const unsigned* amin, unsigned* sure, unsigned* maybe) {
    __shared__ unsigned shu[32];
    const int i = (int)idx[r0 + blockIdx.x];
    const float* row = g + (size_t)blockIdx.x * (size_t)cols;
    count_row(row, cols, 0, idx, i, cosine, sq, e, emax, labels, funkey(amin[i]), sure, maybe, shu);
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
            .map_err(|e| format!("compiling the k* kernels with NVRTC: {e:?}"))
    })
    .as_ref()
    .map(|s| s.as_str())
    .map_err(|e| crate::invalid!("{e}"))
}

/// Whether the GPU search handles this metric on this device.
pub(super) fn applies(metric: Metric, device: &Device) -> bool {
    device.is_cuda() && matches!(metric, Metric::Euclidean | Metric::Cosine)
}

/// Values of a Gram block handed to the GPU at once (2^28 f32 = 1 GiB).
const GPU_BLOCK_ELEMS: usize = 1 << 28;
/// Rows of a block of the symmetric search (4096^2 f32 = 64 MiB).
const SYM_BLOCK: usize = 4096;
/// The float key of +infinity (no other class seen).
const KEY_INF: u32 = 0xff80_0000;

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
            eprintln!(
                "k* trace: {what}: {:.2} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// The device address of a contiguous f32 or u32 CUDA tensor.
fn dptr(t: &Tensor) -> Result<u64> {
    let (s, l) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*s else {
        return Err(crate::invalid!("the k* GPU search needs CUDA tensors"));
    };
    let o = l
        .contiguous_offsets()
        .ok_or_else(|| crate::invalid!("the k* GPU search needs contiguous tensors"))?
        .0;
    let stream = cs.device.cuda_stream();
    let base = match t.dtype() {
        DType::F32 => cs.as_cuda_slice::<f32>()?.device_ptr(&stream).0,
        DType::U32 => cs.as_cuda_slice::<u32>()?.device_ptr(&stream).0,
        d => return Err(crate::invalid!("k* GPU search: unexpected {d:?} tensor")),
    };
    Ok(base + (o * 4) as u64)
}

/// Launches kernel `name` on `grid` blocks of `block` threads; `args` are
/// pushed in order (device addresses as u64).
macro_rules! launch {
    ($dev:expr, $name:expr, $grid:expr, $block:expr, $($arg:expr),+ $(,)?) => {{
        let func = $dev.get_or_load_custom_func($name, "semcon_kstar", ptx()?)?;
        let mut lb = func.builder();
        $( lb.arg(&$arg); )+
        let (gx, gy): (usize, usize) = $grid;
        let cfg = LaunchConfig {
            grid_dim: (gx as u32, gy as u32, 1),
            block_dim: ($block as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        unsafe { lb.launch(cfg) }.map_err(|e| crate::invalid!("CUDA: {e:?}"))?;
    }};
}

/// The blocked search of [`search::blocked`] on the GPU.
pub(super) fn blocked<T: Element>(
    d: &Data<T>,
    block_rows: usize,
    device: &Device,
) -> Result<Vec<u32>> {
    let Device::Cuda(dev) = device else {
        return Err(crate::invalid!("the k* GPU search needs a CUDA device"));
    };
    let (n, dim, metric) = (d.n, d.dim, d.metric);
    let trace = Trace::new(device);
    let (xt, size) = if metric == Metric::Euclidean {
        prepare_euclidean(d, device, &trace)?
    } else {
        let p = search::prepare(d);
        (Tensor::from_vec(p.xs, (n, dim), device)?, p.size)
    };
    trace.mark("prepare");
    let (coef, floor) = search::bound_coefficients(metric, dim, device);
    // float32 bounds, rounded up
    let e: Vec<f32> = size
        .iter()
        .map(|&s| ((coef * s + floor / 2.0) * (1.0 + 1e-6)) as f32)
        .collect();
    let emax = e.iter().fold(0f32, |a, &b| a.max(b));
    let sq: Vec<f32> = match metric {
        Metric::Euclidean => size.iter().map(|&v| v as f32).collect(),
        _ => vec![0.0; n],
    };
    let cos = i32::from(metric == Metric::Cosine);
    let sq = Tensor::from_vec(sq, n, device)?;
    let e = Tensor::from_vec(e, n, device)?;
    let labels = Tensor::from_slice(d.labels, n, device)?;
    let amin = Tensor::from_vec(vec![KEY_INF; n], n, device)?;
    let bad = Tensor::zeros(n, DType::U32, device)?;
    let sure = Tensor::zeros(n, DType::U32, device)?;
    let maybe = Tensor::zeros(n, DType::U32, device)?;
    let (psq, pe, pl, pa, pb, ps, pm) = (
        dptr(&sq)?,
        dptr(&e)?,
        dptr(&labels)?,
        dptr(&amin)?,
        dptr(&bad)?,
        dptr(&sure)?,
        dptr(&maybe)?,
    );
    trace.mark("constants");
    // block_rows 0 (automatic): whole rows while the Gram matrix fits one
    // block, the symmetric search beyond; SEMCON_KSTAR_ROWS=1 forces whole
    // rows (for comparison).
    let fit = (GPU_BLOCK_ELEMS / n).max(1);
    let rows = if block_rows == 0 {
        fit
    } else {
        block_rows.min(fit)
    };
    if rows >= n || std::env::var_os("SEMCON_KSTAR_ROWS").is_some() {
        // Whole rows: one pass per block of rows.
        let mut s = 0;
        while s < n {
            let b = rows.min(n - s);
            let g = search::block_values(metric, &xt, s, b)?;
            let (pg, ni, si) = (dptr(&g)?, n as i32, s as i32);
            launch!(
                dev,
                "kstar_scan",
                (b, 1),
                256,
                pg,
                ni,
                si,
                cos,
                psq,
                pe,
                emax,
                pl,
                pa,
                pb,
                ps,
                pm
            );
            s += b;
        }
        trace.mark("row blocks");
    } else {
        // Pass 1: amin from the upper triangle of blocks.
        let bs = if block_rows == 0 {
            SYM_BLOCK
        } else {
            block_rows.clamp(1, SYM_BLOCK)
        };
        let starts: Vec<usize> = (0..n).step_by(bs).collect();
        for (a, &i0) in starts.iter().enumerate() {
            let ri = bs.min(n - i0);
            let xi = xt.narrow(0, i0, ri)?;
            for &j0 in &starts[a..] {
                let rj = bs.min(n - j0);
                let g = xi.matmul(&xt.narrow(0, j0, rj)?.t()?)?.contiguous()?;
                let (pg, ci, ii, ji) = (dptr(&g)?, rj as i32, i0 as i32, j0 as i32);
                launch!(
                    dev,
                    "kstar_rowmin",
                    (ri, 1),
                    256,
                    pg,
                    ci,
                    ii,
                    ji,
                    cos,
                    psq,
                    pl,
                    pa,
                    pb
                );
                if j0 != i0 {
                    let rr = ri as i32;
                    launch!(
                        dev,
                        "kstar_colmin",
                        (rj.div_ceil(256), ri.div_ceil(64)),
                        256,
                        pg,
                        rr,
                        ci,
                        ii,
                        ji,
                        cos,
                        psq,
                        pl,
                        pa,
                        pb
                    );
                }
            }
        }
        trace.mark("pass 1 (other-class minima)");
        // Pass 2: each class against itself.
        let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, &y) in d.labels.iter().enumerate() {
            members.entry(y).or_default().push(i as u32);
        }
        let mut classes: Vec<_> = members.into_iter().collect();
        classes.sort_unstable_by_key(|(y, _)| *y);
        let order: Vec<u32> = classes
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        let order = Tensor::from_vec(order, n, device)?;
        let mut off = 0;
        for (_, idx) in &classes {
            let nc = idx.len();
            let oc = order.narrow(0, off, nc)?;
            let xc = xt.index_select(&oc, 0)?;
            let pidx = dptr(&oc)?;
            let rc = (GPU_BLOCK_ELEMS / nc).clamp(1, nc);
            let mut r0 = 0;
            while r0 < nc {
                let b = rc.min(nc - r0);
                let g = xc.narrow(0, r0, b)?.matmul(&xc.t()?)?.contiguous()?;
                let (pg, ci, ri) = (dptr(&g)?, nc as i32, r0 as i32);
                launch!(
                    dev,
                    "kstar_count",
                    (b, 1),
                    256,
                    pg,
                    ci,
                    ri,
                    pidx,
                    cos,
                    psq,
                    pe,
                    emax,
                    pl,
                    pa,
                    ps,
                    pm
                );
                r0 += b;
            }
            off += nc;
        }
        trace.mark("pass 2 (same-class counts)");
    }
    let (amin, bad, sure, maybe) = (
        amin.to_vec1::<u32>()?,
        bad.to_vec1::<u32>()?,
        sure.to_vec1::<u32>()?,
        maybe.to_vec1::<u32>()?,
    );
    let sizes = d.class_sizes();
    let mut out = vec![0u32; n];
    out.par_iter_mut().enumerate().for_each(|(i, k)| {
        *k = if bad[i] != 0 {
            exact_row(d, i)
        } else if amin[i] == KEY_INF {
            // no other class at all
            sizes[&d.labels[i]]
        } else if maybe[i] == 0 {
            1 + sure[i]
        } else {
            exact_row(d, i)
        }
    });
    trace.mark("settled");
    Ok(out)
}

/// [`search::prepare`] for euclidean distances on the GPU (the same values:
/// centred in float64, scaled by a power of two, rounded to float32; squared
/// norms of the float32 rows summed in float64).
fn prepare_euclidean<T: Element>(
    d: &Data<T>,
    device: &Device,
    trace: &Trace,
) -> Result<(Tensor, Vec<f64>)> {
    // The means on the CPU (candle's CUDA reduction over the first axis is
    // slow), everything else on the GPU; reductions along the last axis.
    let mu = Tensor::from_vec(search::column_means(d), (1, d.dim), device)?;
    let x = T::upload(d.x, d.n, d.dim, device)?;
    trace.mark("prepare: means, upload");
    let xc = x.to_dtype(DType::F64)?.broadcast_sub(&mu)?;
    let big = xc.abs()?.max(1)?.max(0)?.to_scalar::<f64>()?;
    let scale = if big > 0.0 {
        2f64.powi((-(big.log2().floor() as i32) - 1).clamp(-1000, 1000))
    } else {
        1.0
    };
    let xs = (xc * scale)?.to_dtype(DType::F32)?;
    let size = xs.to_dtype(DType::F64)?.sqr()?.sum(1)?.to_vec1::<f64>()?;
    Ok((xs, size))
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
