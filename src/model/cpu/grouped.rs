//! A grouped convolution (ResNeXt's `groups`) as one candle op on the CPU.

use super::conv::{conv2d, split_groups, ConvGradInput, ConvGradWeight};
use super::im2col::Geom;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// [`conv2d`] with `groups` groups (torchvision's `groups`): input channels
/// and output filters are split into `groups` equal parts, part `g` of the
/// output seeing only part `g` of the input; each part is one [`conv2d`]
/// (differentiable through candle's narrow and cat). The weight is
/// `[O, C / groups, KH, KW]`. A depthwise convolution (`groups` = channels
/// = filters) runs [`super::depthwise`]'s kernel on the CPU.
pub fn conv2d_grouped(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Result<Tensor> {
    if groups <= 1 {
        return conv2d(x, w, stride, pad);
    }
    let (c, o) = (x.dim(1)?, w.dim(0)?);
    if c % groups != 0 || o % groups != 0 || w.dim(1)? * groups != c {
        candle_core::bail!(
            "conv2d: {c} input channels and weight {:?} do not split into {groups} groups",
            w.dims()
        )
    }
    let cpu = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if !cpu {
        // cuDNN (and candle's other back ends) take the groups themselves
        return x.conv2d(w, pad, stride, 1, groups);
    }
    if groups == c && o == c && w.dim(2)? == w.dim(3)? {
        return super::depthwise::depthwise_conv2d(x, w, stride, pad);
    }
    if x.dtype() != w.dtype() {
        candle_core::bail!(
            "conv2d: input is {:?} but weight is {:?}",
            x.dtype(),
            w.dtype()
        )
    }
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        GroupedFwd {
            stride,
            pad,
            groups,
        },
    )
}

/// [`conv2d_grouped`] plus a bias per filter (`[O]`). On the CPU, where none
/// of the three needs a gradient, a plain or depthwise convolution adds the
/// bias inside its op, writing the output once; otherwise the bias is
/// added after.
pub fn conv2d_grouped_bias(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
) -> Result<Tensor> {
    let cpu = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && w.dtype() == x.dtype()
        && b.dtype() == x.dtype();
    let tracked = [x, w, b].iter().any(|t| t.track_op());
    if cpu && !tracked {
        if groups <= 1 {
            return super::conv::cpu_conv2d_bias(x, w, b, stride, pad);
        }
        let (c, (o, ci, kh, kw)) = (x.dim(1)?, w.dims4()?);
        if groups == c && o == c && ci == 1 && kh == kw {
            return super::depthwise::depthwise_conv2d_bias(x, w, b, stride, pad);
        }
    }
    let y = conv2d_grouped(x, w, stride, pad, groups)?;
    if cpu && !tracked {
        return super::channel::channel_affine(&y, None, Some(b));
    }
    y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)
}

/// The gradient w.r.t. the input (of shape `x_dims`) of
/// [`conv2d_grouped`]`(x, w, stride, pad, groups)` given the gradient `dy`
/// at its output, on the CPU: no weight gradient, no graph.
pub fn conv2d_grouped_grad_input(
    x_dims: &[usize],
    w: &Tensor,
    dy: &Tensor,
    (stride, pad, groups): (usize, usize, usize),
) -> Result<Tensor> {
    let (c, o) = (x_dims.get(1).copied().unwrap_or(0), w.dim(0)?);
    let dy = dy.contiguous()?;
    if groups <= 1 {
        let geom = Geom::new(x_dims, w.dims(), stride, pad)?;
        return dy.apply_op2_no_bwd(&w.contiguous()?, &ConvGradInput(geom));
    }
    if c % groups != 0 || o % groups != 0 || w.dim(1)? * groups != c {
        candle_core::bail!(
            "conv2d: {c} input channels and weight {:?} do not split into {groups} groups",
            w.dims()
        )
    }
    if groups == c && o == c && w.dim(2)? == w.dim(3)? {
        return super::depthwise::depthwise_grad_input(x_dims, w, &dy, stride, pad);
    }
    let (cg, og) = (c / groups, o / groups);
    let mut xg_dims = x_dims.to_vec();
    xg_dims[1] = cg;
    let parts = (0..groups)
        .map(|g| {
            let wg = w.narrow(0, g * og, og)?.contiguous()?;
            let dyg = dy.narrow(1, g * og, og)?.contiguous()?;
            let geom = Geom::new(&xg_dims, wg.dims(), stride, pad)?;
            dyg.apply_op2_no_bwd(&wg, &ConvGradInput(geom))
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// A grouped convolution as one op: forward by [`split_groups`] on
/// untracked copies, backward as one input-gradient and one
/// weight-gradient convolution per group, joined once. (Through candle's
/// narrow, each group's backward would pad its gradient to the whole
/// tensor: G full-size tensors per layer, 32 for a ResNeXt.)
pub(crate) struct GroupedFwd {
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    pub(crate) groups: usize,
}

/// An untracked CPU tensor with the values of `(s, l)`.
fn tensor_of(s: &CpuStorage, l: &Layout) -> Result<Tensor> {
    let dev = candle_core::Device::Cpu;
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("grouped conv2d: non-contiguous argument")
    };
    match s {
        CpuStorage::F32(v) => Tensor::from_slice(&v[a..b], l.shape(), &dev),
        CpuStorage::F64(v) => Tensor::from_slice(&v[a..b], l.shape(), &dev),
        _ => candle_core::bail!("grouped conv2d: f32 or f64 only"),
    }
}

impl CustomOp2 for GroupedFwd {
    fn name(&self) -> &'static str {
        "semcon-grouped-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (tensor_of(s1, l1)?, tensor_of(s2, l2)?);
        let y = split_groups(&x, &w, self.stride, self.pad, self.groups)?;
        let shape = y.shape().clone();
        let (st, _) = y.storage_and_layout();
        match &*st {
            candle_core::Storage::Cpu(c) => Ok((c.clone(), shape)),
            _ => candle_core::bail!("grouped conv2d: not on the CPU"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (c, o) = (x.dim(1)?, w.dim(0)?);
        let (cg, og) = (c / self.groups, o / self.groups);
        let (need_dx, need_dw) = (x.track_op(), w.track_op());
        let (x, w, dy) = (x.detach(), w.detach(), dy.detach());
        let mut dxs = Vec::new();
        let mut dws = Vec::new();
        for g in 0..self.groups {
            let xg = x.narrow(1, g * cg, cg)?.contiguous()?;
            let wg = w.narrow(0, g * og, og)?.contiguous()?;
            let dyg = dy.narrow(1, g * og, og)?.contiguous()?;
            let geom = Geom::new(xg.dims(), wg.dims(), self.stride, self.pad)?;
            if need_dx {
                dxs.push(dyg.apply_op2_no_bwd(&wg, &ConvGradInput(geom))?);
            }
            if need_dw {
                dws.push(xg.apply_op2_no_bwd(&dyg, &ConvGradWeight(geom))?);
            }
        }
        let join = |v: Vec<Tensor>, d| -> Result<Option<Tensor>> {
            Ok(if v.is_empty() {
                None
            } else {
                Some(Tensor::cat(&v, d)?)
            })
        };
        Ok((join(dxs, 1)?, join(dws, 0)?))
    }
}
