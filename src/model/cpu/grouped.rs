//! A grouped convolution (ResNeXt's `groups`) as one candle op on the CPU.

#[cfg(test)]
use super::conv::split_groups;
use super::conv::{conv2d, grouped_kernel, ConvGradWeight, GroupedPass};
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

/// A grouped convolution as one op: the forward pass and the input
/// gradient each run every (image, group) pair in parallel, in place
/// ([`grouped_kernel`]: no copies of the groups, no join, both cores busy
/// even at batch 1); the weight gradient is one convolution per group,
/// joined once. (Through candle's narrow, each group's backward would pad
/// its gradient to the whole tensor: G full-size tensors per layer, 32 for
/// a ResNeXt.)
pub(crate) struct GroupedFwd {
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    pub(crate) groups: usize,
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
        let g = group_geom(l1.dims(), l2.dims(), self.stride, self.pad, self.groups)?;
        let y = grouped_kernel((s1, l1), (s2, l2), &g, self.groups, GroupedPass::Forward)?;
        let (b, _, _, _) = l1.shape().dims4()?;
        Ok((y, Shape::from((b, g.o * self.groups, g.oh, g.ow))))
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
        if need_dx {
            // One op over every (image, group) pair.
            let g = group_geom(x.dims(), w.dims(), self.stride, self.pad, self.groups)?;
            dxs.push(dy.contiguous()?.apply_op2_no_bwd(
                &w.contiguous()?,
                &GroupedGradInput {
                    g,
                    groups: self.groups,
                },
            )?);
        }
        for g in 0..self.groups {
            if !need_dw {
                break;
            }
            let xg = x.narrow(1, g * cg, cg)?.contiguous()?;
            let wg = w.narrow(0, g * og, og)?.contiguous()?;
            let dyg = dy.narrow(1, g * og, og)?.contiguous()?;
            let geom = Geom::new(xg.dims(), wg.dims(), self.stride, self.pad)?;
            dws.push(xg.apply_op2_no_bwd(&dyg, &ConvGradWeight(geom))?);
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

/// One group's geometry (its channels and filters, the whole batch) of a
/// grouped convolution of `x` (`[B, C, H, W]`) by `w` (`[O, C/groups, k, k]`).
fn group_geom(x: &[usize], w: &[usize], stride: usize, pad: usize, groups: usize) -> Result<Geom> {
    let (&[b, c, h, wd], &[o, ci, kh, kw]) = (x, w) else {
        candle_core::bail!("grouped conv2d: expected 4-d input and weight, got {x:?} and {w:?}")
    };
    if groups == 0 || c % groups != 0 || o % groups != 0 || ci * groups != c {
        candle_core::bail!(
            "grouped conv2d: {c} channels and weight {w:?} do not split into {groups} groups"
        )
    }
    Geom::new(
        &[b, c / groups, h, wd],
        &[o / groups, ci, kh, kw],
        stride,
        pad,
    )
}

/// (dy, w) -> dx of a grouped convolution.
struct GroupedGradInput {
    g: Geom,
    groups: usize,
}

impl CustomOp2 for GroupedGradInput {
    fn name(&self) -> &'static str {
        "semcon-grouped-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, n) = (&self.g, self.groups);
        let dy = Shape::from((g.b, g.o * n, g.oh, g.ow));
        let w = Shape::from((g.o * n, g.c, g.kh, g.kw));
        if l1.shape() != &dy || l2.shape() != &w {
            candle_core::bail!(
                "grouped conv2d backward: unexpected shapes {:?} {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        let dx = grouped_kernel((s1, l1), (s2, l2), g, n, GroupedPass::GradInput)?;
        Ok((dx, Shape::from((g.b, g.c * n, g.h, g.w))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// One op over every (image, group) pair equals one convolution per
    /// group (narrowed, then joined), forward and input gradient, in f64:
    /// 3x3 with and without stride, 1x1 (no im2col), batch 1 and 3.
    #[test]
    fn grouped_equals_one_convolution_per_group() {
        let dev = Device::Cpu;
        for (b, c, o, groups, k, stride, pad, h, w) in [
            (3, 8, 12, 4, 3, 1, 1, 7, 6),
            (1, 8, 8, 2, 3, 2, 1, 9, 8),
            (3, 12, 6, 3, 1, 1, 0, 5, 4),
            (2, 6, 6, 3, 1, 2, 0, 5, 5),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f64, 1., (b, c, h, w), &dev).unwrap()).unwrap();
            let wt = Tensor::randn(0f64, 1., (o, c / groups, k, k), &dev).unwrap();
            let a = conv2d_grouped(x.as_tensor(), &wt, stride, pad, groups).unwrap();
            let r = split_groups(x.as_tensor(), &wt, stride, pad, groups).unwrap();
            assert_eq!(a.dims(), r.dims());
            assert!(
                max_diff(&a, &r) < 1e-12,
                "forward {b} {c} {o} {groups} {k} {stride}"
            );
            let d = Tensor::randn(0f64, 1., a.dims(), &dev).unwrap();
            let ga = (&a * &d).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&r * &d).unwrap().sum_all().unwrap().backward().unwrap();
            let (p, q) = (ga.get(&x).unwrap(), gr.get(&x).unwrap());
            assert!(
                max_diff(p, q) < 1e-12,
                "gradient {b} {c} {o} {groups} {k} {stride}"
            );
        }
    }
}
