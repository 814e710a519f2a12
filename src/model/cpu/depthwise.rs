//! Depthwise convolution (torchvision's `groups = channels`, one filter per
//! channel: EfficientNet's MBConv, ConvNeXt's 7x7) as a candle custom op with
//! its two backward passes, direct loops over each channel's plane in
//! parallel. candle 0.11 runs `groups = C` as C separate convolutions
//! (about 0.25 GFLOP/s); a plane-by-plane loop whose inner loop runs along a
//! row (contiguous for stride 1) is what this layer needs instead.

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType,
};
use rayon::prelude::*;

/// The sizes of one depthwise convolution: input `[n, c, h, w]`, weight
/// `[c, 1, k, k]`, square stride and symmetric padding.
#[derive(Clone, Copy, Debug)]
struct Dw {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Dw {
    fn new(x: &[usize], wt: &[usize], stride: usize, pad: usize) -> Result<Dw> {
        let (&[n, c, h, w], &[o, one, k, k2]) = (x, wt) else {
            candle_core::bail!("depthwise conv: input {x:?} and weight {wt:?} are not 4-D")
        };
        if o != c || one != 1 || k != k2 || k == 0 || stride == 0 {
            candle_core::bail!(
                "depthwise conv: weight {wt:?} is not [{c}, 1, k, k] for input {x:?}"
            )
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!(
                "depthwise conv: a {h}x{w} input padded by {pad} is smaller than the {k}x{k} kernel"
            )
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Dw {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            ho,
            wo,
        })
    }
    fn x_shape(&self) -> Shape {
        (self.n, self.c, self.h, self.w).into()
    }
    fn y_shape(&self) -> Shape {
        (self.n, self.c, self.ho, self.wo).into()
    }
    fn w_shape(&self) -> Shape {
        (self.c, 1, self.k, self.k).into()
    }
}

/// Depthwise 2-D convolution, NCHW input, weight `[C, 1, k, k]`, no bias;
/// differentiable once (input and weight).
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    Dw::new(x.dims(), w.dims(), stride, pad)?;
    x.contiguous()?
        .apply_op2(&w.contiguous()?, DwFwd { stride, pad })
}

fn slices<'a, T: WithDType>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
) -> Result<(&'a [T], &'a [T])> {
    let get = |s: &'a CpuStorage, l: &Layout| -> Result<&'a [T]> {
        let v = s.as_slice::<T>()?;
        match l.contiguous_offsets() {
            Some((a, b)) => Ok(&v[a..b]),
            None => candle_core::bail!("depthwise conv: non-contiguous argument"),
        }
    };
    Ok((get(s1, l1)?, get(s2, l2)?))
}

impl Dw {
    /// Width and height of a plane padded on every side.
    fn padded(&self) -> (usize, usize) {
        (self.w + 2 * self.pad, self.h + 2 * self.pad)
    }
}

/// Copies plane `x` (`h`x`w`) into the middle of `buf`, zeros around it.
fn pad_plane<T: WithDType>(g: &Dw, x: &[T], buf: &mut Vec<T>) {
    let (pw, ph) = g.padded();
    buf.clear();
    buf.resize(pw * ph, T::zero());
    for y in 0..g.h {
        let o = (y + g.pad) * pw + g.pad;
        buf[o..o + g.w].copy_from_slice(&x[y * g.w..(y + 1) * g.w]);
    }
}

/// `out_row[ox] += w * row[ox * stride + kx]` for every output column: the
/// inner loop, contiguous (vectorised) for stride 1.
#[inline(always)]
fn axpy_row<T: WithDType>(out_row: &mut [T], row: &[T], w: T, kx: usize, stride: usize) {
    if stride == 1 {
        let src = &row[kx..kx + out_row.len()];
        for (o, &v) in out_row.iter_mut().zip(src) {
            *o += w * v;
        }
    } else {
        for (ox, o) in out_row.iter_mut().enumerate() {
            *o += w * row[ox * stride + kx];
        }
    }
}

fn forward<T: WithDType>(g: &Dw, x: &[T], wt: &[T]) -> Vec<T> {
    let (plane, oplane, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
    let (pw, _) = g.padded();
    let mut y = vec![T::zero(); g.n * g.c * oplane];
    y.par_chunks_mut(oplane).enumerate().for_each_init(Vec::new, |buf, (nc, out)| {
        let c = nc % g.c;
        pad_plane(g, &x[nc * plane..(nc + 1) * plane], buf);
        let wc = &wt[c * kk..(c + 1) * kk];
        for (oy, orow) in out.chunks_exact_mut(g.wo).enumerate() {
            for ky in 0..g.k {
                let row = &buf[(oy * g.stride + ky) * pw..(oy * g.stride + ky + 1) * pw];
                for kx in 0..g.k {
                    axpy_row(orow, row, wc[ky * g.k + kx], kx, g.stride);
                }
            }
        }
    });
    y
}

fn grad_input<T: WithDType>(g: &Dw, dy: &[T], wt: &[T]) -> Vec<T> {
    let (plane, oplane, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
    let (pw, ph) = g.padded();
    let mut dx = vec![T::zero(); g.n * g.c * plane];
    dx.par_chunks_mut(plane).enumerate().for_each_init(Vec::new, |buf: &mut Vec<T>, (nc, gx)| {
        let c = nc % g.c;
        let gp = &dy[nc * oplane..(nc + 1) * oplane];
        let wc = &wt[c * kk..(c + 1) * kk];
        // the gradient of the padded plane, then its middle
        buf.clear();
        buf.resize(pw * ph, T::zero());
        for (oy, grow) in gp.chunks_exact(g.wo).enumerate() {
            for ky in 0..g.k {
                let row = &mut buf[(oy * g.stride + ky) * pw..(oy * g.stride + ky + 1) * pw];
                for kx in 0..g.k {
                    let w = wc[ky * g.k + kx];
                    if g.stride == 1 {
                        for (d, &v) in row[kx..kx + g.wo].iter_mut().zip(grow) {
                            *d += w * v;
                        }
                    } else {
                        for (ox, &v) in grow.iter().enumerate() {
                            row[ox * g.stride + kx] += w * v;
                        }
                    }
                }
            }
        }
        for y in 0..g.h {
            let o = (y + g.pad) * pw + g.pad;
            gx[y * g.w..(y + 1) * g.w].copy_from_slice(&buf[o..o + g.w]);
        }
    });
    dx
}

fn grad_weight<T: WithDType>(g: &Dw, x: &[T], dy: &[T]) -> Vec<T> {
    let (plane, oplane, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
    let (pw, _) = g.padded();
    let mut dw = vec![T::zero(); g.c * kk];
    dw.par_chunks_mut(kk).enumerate().for_each_init(Vec::new, |buf, (c, gw)| {
        for n in 0..g.n {
            let nc = n * g.c + c;
            pad_plane(g, &x[nc * plane..(nc + 1) * plane], buf);
            let gp = &dy[nc * oplane..(nc + 1) * oplane];
            for (oy, grow) in gp.chunks_exact(g.wo).enumerate() {
                for ky in 0..g.k {
                    let row = &buf[(oy * g.stride + ky) * pw..(oy * g.stride + ky + 1) * pw];
                    for kx in 0..g.k {
                        let mut acc = T::zero();
                        if g.stride == 1 {
                            for (&a, &b) in grow.iter().zip(&row[kx..kx + g.wo]) {
                                acc += a * b;
                            }
                        } else {
                            for (ox, &a) in grow.iter().enumerate() {
                                acc += a * row[ox * g.stride + kx];
                            }
                        }
                        gw[ky * g.k + kx] += acc;
                    }
                }
            }
        }
    });
    dw
}

type Kernel<T> = fn(&Dw, &[T], &[T]) -> Vec<T>;

fn run(
    a: (&CpuStorage, &Layout),
    b: (&CpuStorage, &Layout),
    g: &Dw,
    (f32k, f64k): (Kernel<f32>, Kernel<f64>),
) -> Result<CpuStorage> {
    match (a.0, b.0) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => {
            let (x, y) = slices::<f32>(a, b)?;
            Ok(CpuStorage::F32(f32k(g, x, y)))
        }
        (CpuStorage::F64(_), CpuStorage::F64(_)) => {
            let (x, y) = slices::<f64>(a, b)?;
            Ok(CpuStorage::F64(f64k(g, x, y)))
        }
        _ => candle_core::bail!(
            "depthwise conv: {:?} and {:?} (f32 or f64 only)",
            a.0.dtype(),
            b.0.dtype()
        ),
    }
}

fn expect(l: &Layout, want: &Shape, what: &str) -> Result<()> {
    if l.shape() != want {
        candle_core::bail!(
            "depthwise conv: {what} is {:?}, expected {want:?}",
            l.dims()
        )
    }
    Ok(())
}

struct DwFwd {
    stride: usize,
    pad: usize,
}

impl CustomOp2 for DwFwd {
    fn name(&self) -> &'static str {
        "semcon-depthwise-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Dw::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let out = run((s1, l1), (s2, l2), &g, (forward::<f32>, forward::<f64>))?;
        Ok((out, g.y_shape()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Dw::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let dy = dy.contiguous()?;
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(&w.contiguous()?, &DwGradInput(g))?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.contiguous()?.apply_op2_no_bwd(&dy, &DwGradWeight(g))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// (dy, w) -> dx.
struct DwGradInput(Dw);

impl CustomOp2 for DwGradInput {
    fn name(&self) -> &'static str {
        "semcon-depthwise-conv2d-grad-input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        expect(l1, &g.y_shape(), "gradient")?;
        expect(l2, &g.w_shape(), "weight")?;
        let out = run(
            (s1, l1),
            (s2, l2),
            g,
            (grad_input::<f32>, grad_input::<f64>),
        )?;
        Ok((out, g.x_shape()))
    }
}

/// (x, dy) -> dw.
struct DwGradWeight(Dw);

impl CustomOp2 for DwGradWeight {
    fn name(&self) -> &'static str {
        "semcon-depthwise-conv2d-grad-weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        expect(l1, &g.x_shape(), "input")?;
        expect(l2, &g.y_shape(), "gradient")?;
        let out = run(
            (s1, l1),
            (s2, l2),
            g,
            (grad_weight::<f32>, grad_weight::<f64>),
        )?;
        Ok((out, g.w_shape()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::conv::split_groups;
    use candle_core::{DType, Device, Var};

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

    /// Against the grouped im2col convolution (itself checked against
    /// PyTorch), forward and both gradients, in f64, for strides 1 and 2,
    /// kernels 3, 5 and 7, odd sizes.
    #[test]
    fn matches_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, stride, pad, h, w) in [
            (3, 1, 1, 7, 9),
            (3, 2, 1, 8, 7),
            (5, 2, 2, 9, 11),
            (7, 1, 3, 6, 5),
            (3, 1, 0, 4, 4),
            (7, 1, 3, 1, 2),
            (5, 2, 2, 1, 1),
            (7, 1, 3, 2, 9),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f64, 1., (2, 3, h, w), &dev).unwrap()).unwrap();
            let wt =
                Var::from_tensor(&Tensor::randn(0f64, 1., (3, 1, k, k), &dev).unwrap()).unwrap();
            let a = depthwise_conv2d(x.as_tensor(), wt.as_tensor(), stride, pad).unwrap();
            let b = split_groups(x.as_tensor(), wt.as_tensor(), stride, pad, 3).unwrap();
            assert_eq!(a.dims(), b.dims());
            assert!(max_diff(&a, &b) < 1e-10, "forward k{k} s{stride}");
            let r = Tensor::randn(0f64, 1., a.dims(), &dev).unwrap();
            let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &wt] {
                let (p, q) = (ga.get(v).unwrap(), gb.get(v).unwrap());
                assert!(max_diff(p, q) < 1e-10, "gradient k{k} s{stride}");
            }
        }
        let x = Tensor::zeros((1, 2, 3, 3), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 1, 5, 5), DType::F32, &dev).unwrap();
        assert!(depthwise_conv2d(&x, &w, 1, 0).is_err());
    }
}
