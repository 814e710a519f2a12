//! The convolution used by every model. One function, so the fastest path per
//! device can be chosen in one place.
//!
//! On the CPU (f32 and f64) `conv2d` is a candle custom op: im2col into a
//! scratch buffer and one gemm per chunk of images (the `gemm` crate, the same
//! one candle's matmul uses), chunks run in parallel on rayon. Its backward pass
//! is two more custom ops: the input gradient (gemm with the transposed weight,
//! then col2im) and the weight gradient (gemm of the output gradient with the
//! im2col columns), each only computed when the argument needs a gradient.
//! Other devices and dtypes use candle's own `Tensor::conv2d` (cuDNN on CUDA).
//! The gradients themselves are not differentiable again (no double backward).
//!
//! This file holds the functions and the custom ops; `kernels.rs` the CPU
//! kernels they run; `tests.rs` their tests.

mod kernels;

use super::im2col::Geom;
use super::storage::values;
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};
use kernels::{forward, forward_bias, grad_input, grad_weight};

/// 2-D convolution, NCHW input, OIHW weight, symmetric padding, no bias.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        cpu_conv2d(x, w, stride, pad)
    } else {
        x.conv2d(w, pad, stride, 1, 1)
    }
}

/// A grouped convolution as one [`conv2d`] per group (differentiable
/// through candle's narrow and cat); shapes already checked.
pub(crate) fn split_groups(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Result<Tensor> {
    let (c, o) = (x.dim(1)?, w.dim(0)?);
    let (cg, og) = (c / groups, o / groups);
    let parts = (0..groups)
        .map(|g| {
            conv2d(
                &x.narrow(1, g * cg, cg)?,
                &w.narrow(0, g * og, og)?,
                stride,
                pad,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// The CPU implementation (im2col + gemm custom op), differentiable once.
pub fn cpu_conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    Geom::new(x.dims(), w.dims(), stride, pad)?;
    if x.dtype() != w.dtype() {
        candle_core::bail!(
            "conv2d: input is {:?} but weight is {:?}",
            x.dtype(),
            w.dtype()
        )
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, ConvFwd { stride, pad })
}

/// [`cpu_conv2d`] plus a bias per output channel (`[O]`), as one op that
/// writes its output once (no zero-fill, no second pass for the bias). For
/// inference and the hand-written gradient only: it has no backward, so
/// none of the three may need a gradient.
pub fn cpu_conv2d_bias(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let g = Geom::new(x.dims(), w.dims(), stride, pad)?;
    if x.dtype() != w.dtype() || x.dtype() != b.dtype() {
        candle_core::bail!(
            "conv2d: input is {:?}, weight {:?}, bias {:?}",
            x.dtype(),
            w.dtype(),
            b.dtype()
        )
    }
    if b.dims() != [g.o] {
        candle_core::bail!("conv2d: bias {:?} for {} filters", b.dims(), g.o)
    }
    if [x, w, b].iter().any(|t| t.track_op()) {
        candle_core::bail!("conv2d with bias: no gradient through this op (use conv2d and an add)")
    }
    x.contiguous()?.apply_op3_no_bwd(
        &w.contiguous()?,
        &b.contiguous()?,
        &ConvBiasFwd { stride, pad },
    )
}

/// The contiguous data of a storage as a slice of T (`what` names it).
fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    if l.contiguous_offsets().is_none() {
        candle_core::bail!("conv2d: the {what} must be contiguous")
    }
    values(s, l, "conv2d")
}

/// A CPU kernel of this module on both dtypes: (first, second, shapes) -> output.
type Kernel<T> = fn(&[T], &[T], &Geom) -> Vec<T>;

/// Runs a kernel on two contiguous storages of the same dtype (`what` names
/// them in errors).
fn run_kernel(
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    what: (&str, &str),
    g: &Geom,
    (k32, k64): (Kernel<f32>, Kernel<f64>),
) -> Result<CpuStorage> {
    match s1 {
        CpuStorage::F32(_) => Ok(CpuStorage::F32(k32(
            slice(s1, l1, what.0)?,
            slice(s2, l2, what.1)?,
            g,
        ))),
        CpuStorage::F64(_) => Ok(CpuStorage::F64(k64(
            slice(s1, l1, what.0)?,
            slice(s2, l2, what.1)?,
            g,
        ))),
        s => candle_core::bail!("conv2d: unsupported dtype {:?} on the CPU path", s.dtype()),
    }
}

/// The shape check of the backward kernels.
fn expect_shapes(l1: &Layout, l2: &Layout, want: (Shape, Shape)) -> Result<()> {
    if l1.shape() != &want.0 || l2.shape() != &want.1 {
        candle_core::bail!(
            "conv2d backward: unexpected shapes {:?} {:?}",
            l1.dims(),
            l2.dims()
        )
    }
    Ok(())
}

struct ConvFwd {
    stride: usize,
    pad: usize,
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "semcon-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let out = run_kernel(
            (s1, l1),
            (s2, l2),
            ("input", "weight"),
            &g,
            (forward::<f32>, forward::<f64>),
        )?;
        Ok((out, g.y_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let dy = dy.contiguous()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(&w.contiguous()?, &ConvGradInput(g))?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.contiguous()?.apply_op2_no_bwd(&dy, &ConvGradWeight(g))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

struct ConvBiasFwd {
    stride: usize,
    pad: usize,
}

impl candle_core::CustomOp3 for ConvBiasFwd {
    fn name(&self) -> &'static str {
        "semcon-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward_bias(
                slice(s1, l1, "input")?,
                slice(s2, l2, "weight")?,
                Some(slice(s3, l3, "bias")?),
                &g,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward_bias(
                slice(s1, l1, "input")?,
                slice(s2, l2, "weight")?,
                Some(slice(s3, l3, "bias")?),
                &g,
            )),
            s => candle_core::bail!("conv2d: unsupported dtype {:?} on the CPU path", s.dtype()),
        };
        Ok((out, g.y_shape()))
    }
}

/// (dy, w) -> dx.
pub(crate) struct ConvGradInput(pub(crate) Geom);

impl CustomOp2 for ConvGradInput {
    fn name(&self) -> &'static str {
        "semcon-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        expect_shapes(l1, l2, (g.y_shape(), g.w_shape()))?;
        let out = run_kernel(
            (s1, l1),
            (s2, l2),
            ("gradient", "weight"),
            g,
            (grad_input::<f32>, grad_input::<f64>),
        )?;
        Ok((out, g.x_shape()))
    }
}

/// (x, dy) -> dw.
pub(crate) struct ConvGradWeight(pub(crate) Geom);

impl CustomOp2 for ConvGradWeight {
    fn name(&self) -> &'static str {
        "semcon-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        expect_shapes(l1, l2, (g.x_shape(), g.y_shape()))?;
        let out = run_kernel(
            (s1, l1),
            (s2, l2),
            ("input", "gradient"),
            g,
            (grad_weight::<f32>, grad_weight::<f64>),
        )?;
        Ok((out, g.w_shape()))
    }
}

#[cfg(test)]
mod tests;
