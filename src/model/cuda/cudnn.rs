//! cuDNN and CUDA driver plumbing for the GPU network: status checks, the
//! descriptors (created and destroyed with their owners), activation maps
//! kept on the GPU, and a folded convolution's weights and descriptors.

use crate::model::cpu::folded::FConv;
use candle_core::cuda_backend::cudarc::cudnn::sys as cd;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use candle_core::{bail, Result};
use std::ffi::c_void;
use std::sync::Arc;

/// Whether TF32 tensor cores are allowed (`SEMCON_TF32=1`).
pub fn tf32_allowed() -> bool {
    std::env::var("SEMCON_TF32").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

pub(super) fn ok(s: cd::cudnnStatus_t, what: &str) -> Result<()> {
    if s == cd::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    let name = format!("{s:?}");
    let hint = if name.contains("ALLOC") {
        " (GPU out of memory)"
    } else {
        ""
    };
    bail!("cuDNN {what} failed: {name}{hint}")
}

pub(super) fn drv<T>(
    r: std::result::Result<T, candle_core::cuda_backend::cudarc::driver::DriverError>,
) -> Result<T> {
    // Debug keeps the CUDA error's name ("CUDA_ERROR_OUT_OF_MEMORY, out of memory"),
    // which the batch-halving retry looks for.
    r.map_err(|e| candle_core::Error::Msg(format!("CUDA: {e:?}")))
}

pub(super) fn unsupported(s: cd::cudnnStatus_t) -> bool {
    format!("{s:?}").contains("NOT_SUPPORTED")
}

pub(super) type Ptr = *mut c_void;

pub(super) fn ptr<T>(s: &CudaSlice<T>, st: &CudaStream) -> Ptr {
    let (p, _sync) = s.device_ptr(st);
    p as usize as Ptr
}

pub(super) const ONE: f32 = 1.0;
pub(super) const ZERO: f32 = 0.0;
pub(super) fn sc(v: &f32) -> *const c_void {
    v as *const f32 as *const c_void
}

macro_rules! descriptor {
    ($name:ident, $t:ty, $create:ident, $destroy:ident) => {
        pub(super) struct $name(pub(super) $t);
        impl $name {
            pub(super) fn create() -> Result<Self> {
                let mut d = std::ptr::null_mut();
                ok(unsafe { cd::$create(&mut d) }, stringify!($create))?;
                Ok($name(d))
            }
        }
        impl Drop for $name {
            fn drop(&mut self) {
                unsafe {
                    cd::$destroy(self.0);
                }
            }
        }
        // Plain host-side parameter blocks; every use is under `GpuNet::state`'s lock.
        unsafe impl Send for $name {}
        unsafe impl Sync for $name {}
    };
}
descriptor!(
    TDesc,
    cd::cudnnTensorDescriptor_t,
    cudnnCreateTensorDescriptor,
    cudnnDestroyTensorDescriptor
);
descriptor!(
    FDesc,
    cd::cudnnFilterDescriptor_t,
    cudnnCreateFilterDescriptor,
    cudnnDestroyFilterDescriptor
);
descriptor!(
    CDesc,
    cd::cudnnConvolutionDescriptor_t,
    cudnnCreateConvolutionDescriptor,
    cudnnDestroyConvolutionDescriptor
);
descriptor!(
    ADesc,
    cd::cudnnActivationDescriptor_t,
    cudnnCreateActivationDescriptor,
    cudnnDestroyActivationDescriptor
);
descriptor!(
    PDesc,
    cd::cudnnPoolingDescriptor_t,
    cudnnCreatePoolingDescriptor,
    cudnnDestroyPoolingDescriptor
);

impl TDesc {
    pub(super) fn new(n: usize, c: usize, h: usize, w: usize) -> Result<TDesc> {
        let d = TDesc::create()?;
        ok(
            unsafe {
                cd::cudnnSetTensor4dDescriptor(
                    d.0,
                    cd::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    cd::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    n as i32,
                    c as i32,
                    h as i32,
                    w as i32,
                )
            },
            "tensor descriptor",
        )?;
        Ok(d)
    }
}

impl ADesc {
    pub(super) fn new(mode: cd::cudnnActivationMode_t) -> Result<ADesc> {
        let d = ADesc::create()?;
        ok(
            unsafe {
                cd::cudnnSetActivationDescriptor(
                    d.0,
                    mode,
                    cd::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
                    0.0,
                )
            },
            "activation descriptor",
        )?;
        Ok(d)
    }
}

/// An activation map kept on the GPU (NCHW, f32).
pub(super) struct Act {
    pub(super) buf: CudaSlice<f32>,
    pub(super) dims: (usize, usize, usize, usize),
    pub(super) desc: TDesc,
}

impl Act {
    /// A copy on the GPU (what the backward pass keeps of a returned map).
    pub(super) fn copy(&self, st: &Arc<CudaStream>) -> Result<Act> {
        let (n, c, h, w) = self.dims;
        Ok(Act {
            buf: drv(st.clone_dtod(&self.buf))?,
            dims: self.dims,
            desc: TDesc::new(n, c, h, w)?,
        })
    }

    pub(super) fn new(
        st: &Arc<CudaStream>,
        (n, c, h, w): (usize, usize, usize, usize),
    ) -> Result<Act> {
        Ok(Act {
            buf: drv(st.alloc_zeros::<f32>(n * c * h * w))?,
            dims: (n, c, h, w),
            desc: TDesc::new(n, c, h, w)?,
        })
    }
}

/// A convolution with BatchNorm folded in, its weights on the GPU.
pub(super) struct GConv {
    pub(super) id: usize,
    pub(super) o: usize,
    pub(super) c: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) s: usize,
    pub(super) p: usize,
    pub(super) w: CudaSlice<f32>,
    pub(super) b: CudaSlice<f32>,
    pub(super) fdesc: FDesc,
    pub(super) bdesc: TDesc,
    pub(super) cdesc: CDesc,
}

impl GConv {
    pub(super) fn new(f: &FConv, id: usize, st: &Arc<CudaStream>) -> Result<GConv> {
        let fdesc = FDesc::create()?;
        ok(
            unsafe {
                cd::cudnnSetFilter4dDescriptor(
                    fdesc.0,
                    cd::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    cd::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                    f.o as i32,
                    f.c as i32,
                    f.kh as i32,
                    f.kw as i32,
                )
            },
            "filter descriptor",
        )?;
        let cdesc = CDesc::create()?;
        ok(
            unsafe {
                cd::cudnnSetConvolution2dDescriptor(
                    cdesc.0,
                    f.p as i32,
                    f.p as i32,
                    f.s as i32,
                    f.s as i32,
                    1,
                    1,
                    cd::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    cd::cudnnDataType_t::CUDNN_DATA_FLOAT,
                )
            },
            "convolution descriptor",
        )?;
        Ok(GConv {
            id,
            o: f.o,
            c: f.c,
            kh: f.kh,
            kw: f.kw,
            s: f.s,
            p: f.p,
            w: drv(st.clone_htod(&f.w))?,
            b: drv(st.clone_htod(&f.b))?,
            fdesc,
            bdesc: TDesc::new(1, f.o, 1, 1)?,
            cdesc,
        })
    }

    pub(super) fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (hp, wp) = (h + 2 * self.p, w + 2 * self.p);
        if hp < self.kh || wp < self.kw {
            bail!(
                "images of {h}x{w} are too small for a {}x{} convolution",
                self.kh,
                self.kw
            )
        }
        Ok(((hp - self.kh) / self.s + 1, (wp - self.kw) / self.s + 1))
    }
}
