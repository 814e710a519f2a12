//! Depthwise convolution (torchvision's `groups = channels`, one filter per
//! channel: EfficientNet's MBConv, ConvNeXt's 7x7) as a candle custom op with
//! its two backward passes, images in
//! parallel. candle 0.11 runs `groups = C` as C separate convolutions
//! (about 0.25 GFLOP/s); here each image is transposed channels-last into a
//! padded block, and every kernel tap is one multiply-add along the
//! channels (contiguous, vectorised).

use super::simd::widest;
use super::storage::values;
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

/// The gradient w.r.t. the input (of shape `x_dims`) of
/// [`depthwise_conv2d`] given the gradient `dy` at its output.
pub fn depthwise_grad_input(
    x_dims: &[usize],
    w: &Tensor,
    dy: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let g = Dw::new(x_dims, w.dims(), stride, pad)?;
    dy.contiguous()?
        .apply_op2_no_bwd(&w.contiguous()?, &DwGradInput(g))
}

fn slices<'a, T: WithDType>(
    (s1, l1): (&'a CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
) -> Result<(&'a [T], &'a [T])> {
    let op = "depthwise conv";
    Ok((values(s1, l1, op)?, values(s2, l2, op)?))
}

impl Dw {
    /// Width and height of a plane padded on every side.
    fn padded(&self) -> (usize, usize) {
        (self.w + 2 * self.pad, self.h + 2 * self.pad)
    }
}

// The kernels work channels-last: one image's planes are transposed into a
// zero-padded [H+2p, W+2p, C] block, so that the innermost loop runs along
// the channels (contiguous, long: 96 to 1152 in ConvNeXt and EfficientNet)
// instead of along a row of 7 to 56 pixels.

/// Image `x` (`[C, H, W]`) into `buf` as `[H+2p, W+2p, C]`, zeros around.
fn to_padded_hwc<T: WithDType>(g: &Dw, x: &[T], buf: &mut Vec<T>) {
    let (pw, ph) = g.padded();
    buf.clear();
    buf.resize(ph * pw * g.c, T::zero());
    let plane = g.h * g.w;
    for y in 0..g.h {
        for xx in 0..g.w {
            let o = ((y + g.pad) * pw + xx + g.pad) * g.c;
            let dst = &mut buf[o..o + g.c];
            for (c, d) in dst.iter_mut().enumerate() {
                *d = x[c * plane + y * g.w + xx];
            }
        }
    }
}

/// The weight `[C, 1, k, k]` as `[k, k, C]`.
fn weight_kkc<T: WithDType>(g: &Dw, wt: &[T]) -> Vec<T> {
    let kk = g.k * g.k;
    let mut out = vec![T::zero(); kk * g.c];
    for c in 0..g.c {
        for t in 0..kk {
            out[t * g.c + c] = wt[c * kk + t];
        }
    }
    out
}

/// `acc[c] += a[c] * b[c]`, vectorised.
#[inline(always)]
fn fma_row<T: WithDType>(acc: &mut [T], a: &[T], b: &[T]) {
    for ((o, &x), &y) in acc.iter_mut().zip(a).zip(b) {
        *o += x * y;
    }
}

/// Channels per register block of the forward pass: their sums stay in
/// registers over all k*k taps (the same sums in the same order as one
/// channel at a time).
const CB: usize = 32;

fn forward<T: WithDType>(g: &Dw, x: &[T], wt: &[T]) -> Vec<T> {
    forward_bias(g, x, wt, None)
}

/// The forward pass, plus a bias per channel when given (the sums start
/// from it). Every output value is written once, into memory never
/// zero-filled.
fn forward_bias<T: WithDType>(g: &Dw, x: &[T], wt: &[T], bias: Option<&[T]>) -> Vec<T> {
    let (plane, oplane, c) = (g.h * g.w, g.ho * g.wo, g.c);
    let wk = weight_kkc(g, wt);
    let len = g.n * c * oplane;
    let mut y: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(c * oplane)
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(buf, acc, hwc): &mut (Vec<T>, Vec<T>, Vec<T>), (n, out)| {
                to_padded_hwc(g, &x[n * c * plane..(n + 1) * c * plane], buf);
                image_forward_widest(g, buf, &wk, bias, out, (acc, hwc))
            },
        );
    // SAFETY: `image_forward` wrote every value of every image's chunk.
    unsafe { y.set_len(len) };
    y
}

widest! {
    /// [`image_forward`] compiled for the widest vector instructions the CPU
    /// has (with AVX-512F, the 32 channels of a block in two registers).
    fn image_forward_widest[T: WithDType](
        g: &Dw,
        buf: &[T],
        wk: &[T],
        bias: Option<&[T]>,
        out: &mut [MaybeUninit<T>],
        scratch: (&mut Vec<T>, &mut Vec<T>),
    ) => image_forward
}

/// One image: padded channels-last `buf`, weights `[k, k, C]` (and a bias
/// per channel) -> `out` `[C, Ho, Wo]`, every value written.
#[inline(always)]
fn image_forward<T: WithDType>(
    g: &Dw,
    buf: &[T],
    wk: &[T],
    bias: Option<&[T]>,
    out: &mut [MaybeUninit<T>],
    scratch: (&mut Vec<T>, &mut Vec<T>),
) {
    let (oplane, c) = (g.ho * g.wo, g.c);
    let (pw, _) = g.padded();
    let full = c - c % CB;
    let (acc, hwc) = scratch;
    acc.clear();
    acc.resize(c - full, T::zero());
    hwc.clear();
    hwc.resize(oplane * c, T::zero());
    for oy in 0..g.ho {
        for ox in 0..g.wo {
            let o = oy * g.wo + ox;
            for cb in (0..full).step_by(CB) {
                let mut a = [T::zero(); CB];
                if let Some(b) = bias {
                    a.copy_from_slice(&b[cb..cb + CB]);
                }
                for ky in 0..g.k {
                    let row = (oy * g.stride + ky) * pw + ox * g.stride;
                    for kx in 0..g.k {
                        let s: &[T; CB] = buf[(row + kx) * c + cb..][..CB]
                            .try_into()
                            .expect("CB values");
                        let w: &[T; CB] = wk[(ky * g.k + kx) * c + cb..][..CB]
                            .try_into()
                            .expect("CB values");
                        for j in 0..CB {
                            a[j] += s[j] * w[j];
                        }
                    }
                }
                hwc[o * c + cb..o * c + cb + CB].copy_from_slice(&a);
            }
            if full < c {
                match bias {
                    Some(b) => acc.copy_from_slice(&b[full..]),
                    None => acc.iter_mut().for_each(|v| *v = T::zero()),
                }
                for ky in 0..g.k {
                    let row = (oy * g.stride + ky) * pw + ox * g.stride;
                    for kx in 0..g.k {
                        let src = &buf[(row + kx) * c + full..(row + kx + 1) * c];
                        let w = &wk[(ky * g.k + kx) * c + full..(ky * g.k + kx + 1) * c];
                        fma_row(acc, src, w);
                    }
                }
                hwc[o * c + full..(o + 1) * c].copy_from_slice(acc);
            }
        }
    }
    // Channels-last -> `[C, Ho, Wo]`, in blocks of pixels that stay in cache.
    const PB: usize = 64;
    for ob in (0..oplane).step_by(PB) {
        let oe = (ob + PB).min(oplane);
        for ch in 0..c {
            let dst = &mut out[ch * oplane + ob..ch * oplane + oe];
            for (d, o) in dst.iter_mut().zip(ob..oe) {
                d.write(hwc[o * c + ch]);
            }
        }
    }
}

fn grad_input<T: WithDType>(g: &Dw, dy: &[T], wt: &[T]) -> Vec<T> {
    let (plane, oplane, c) = (g.h * g.w, g.ho * g.wo, g.c);
    let wk = weight_kkc(g, wt);
    let len = g.n * c * plane;
    let mut dx: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return dx;
    }
    dx.spare_capacity_mut()[..len]
        .par_chunks_mut(c * plane)
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |scratch: &mut (Vec<T>, Vec<T>), (n, gx)| {
                let gp = &dy[n * c * oplane..(n + 1) * c * oplane];
                image_grad_input_widest(g, gp, &wk, gx, scratch)
            },
        );
    // SAFETY: `image_grad_input` wrote every value of every image.
    unsafe { dx.set_len(len) };
    dx
}

widest! {
    /// [`image_grad_input`] compiled for the widest vector instructions the
    /// CPU has.
    fn image_grad_input_widest[T: WithDType](
        g: &Dw,
        gp: &[T],
        wk: &[T],
        gx: &mut [MaybeUninit<T>],
        scratch: &mut (Vec<T>, Vec<T>),
    ) => image_grad_input
}

/// One image: `gp` (`[C, Ho, Wo]`), weights `[k, k, C]` -> `gx` `[C, H, W]`.
#[inline(always)]
fn image_grad_input<T: WithDType>(
    g: &Dw,
    gp: &[T],
    wk: &[T],
    gx: &mut [MaybeUninit<T>],
    (buf, gyr): &mut (Vec<T>, Vec<T>),
) {
    let (plane, oplane, c) = (g.h * g.w, g.ho * g.wo, g.c);
    let (pw, ph) = g.padded();
    // the gradient of the padded channels-last block, then its middle
    buf.clear();
    buf.resize(ph * pw * c, T::zero());
    gyr.clear();
    gyr.resize(c, T::zero());
    for oy in 0..g.ho {
        for ox in 0..g.wo {
            let o = oy * g.wo + ox;
            for (ch, v) in gyr.iter_mut().enumerate() {
                *v = gp[ch * oplane + o];
            }
            for ky in 0..g.k {
                let row = (oy * g.stride + ky) * pw + ox * g.stride;
                for kx in 0..g.k {
                    let dst = &mut buf[(row + kx) * c..(row + kx + 1) * c];
                    let w = &wk[(ky * g.k + kx) * c..(ky * g.k + kx + 1) * c];
                    fma_row(dst, gyr, w);
                }
            }
        }
    }
    for y in 0..g.h {
        for xx in 0..g.w {
            let o = ((y + g.pad) * pw + xx + g.pad) * c;
            for (ch, &v) in buf[o..o + c].iter().enumerate() {
                gx[ch * plane + y * g.w + xx].write(v);
            }
        }
    }
}

fn grad_weight<T: WithDType>(g: &Dw, x: &[T], dy: &[T]) -> Vec<T> {
    let (plane, oplane, c, kk) = (g.h * g.w, g.ho * g.wo, g.c, g.k * g.k);
    let (pw, _) = g.padded();
    let gk = (0..g.n)
        .into_par_iter()
        .fold(
            || (vec![T::zero(); kk * c], Vec::new(), vec![T::zero(); c]),
            |(mut acc, mut buf, mut gyr), n| {
                to_padded_hwc(g, &x[n * c * plane..(n + 1) * c * plane], &mut buf);
                let gp = &dy[n * c * oplane..(n + 1) * c * oplane];
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let o = oy * g.wo + ox;
                        for (ch, v) in gyr.iter_mut().enumerate() {
                            *v = gp[ch * oplane + o];
                        }
                        for ky in 0..g.k {
                            let row = (oy * g.stride + ky) * pw + ox * g.stride;
                            for kx in 0..g.k {
                                let t = ky * g.k + kx;
                                let src = &buf[(row + kx) * c..(row + kx + 1) * c];
                                fma_row(&mut acc[t * c..(t + 1) * c], src, &gyr);
                            }
                        }
                    }
                }
                (acc, buf, gyr)
            },
        )
        .map(|(acc, _, _)| acc)
        .reduce(
            || vec![T::zero(); kk * c],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(p, q)| *p += *q);
                a
            },
        );
    // [k, k, C] -> [C, 1, k, k]
    let mut dw = vec![T::zero(); c * kk];
    for ch in 0..c {
        for t in 0..kk {
            dw[ch * kk + t] = gk[t * c + ch];
        }
    }
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

/// [`depthwise_conv2d`] plus a bias per channel (`[C]`), each output value
/// written once. For inference and the hand-written gradient only: it has
/// no backward, so none of the three may need a gradient.
pub fn depthwise_conv2d_bias(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let g = Dw::new(x.dims(), w.dims(), stride, pad)?;
    if b.dims() != [g.c] || b.dtype() != x.dtype() {
        candle_core::bail!(
            "depthwise conv: bias {:?} ({:?}) for {} channels of {:?}",
            b.dims(),
            b.dtype(),
            g.c,
            x.dtype()
        )
    }
    if [x, w, b].iter().any(|t| t.track_op()) {
        candle_core::bail!("depthwise conv with bias: no gradient through this op")
    }
    x.contiguous()?.apply_op3_no_bwd(
        &w.contiguous()?,
        &b.contiguous()?,
        &DwBiasFwd { stride, pad },
    )
}

struct DwBiasFwd {
    stride: usize,
    pad: usize,
}

impl candle_core::CustomOp3 for DwBiasFwd {
    fn name(&self) -> &'static str {
        "semcon-depthwise-conv2d-bias"
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
        let g = Dw::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        fn go<T: WithDType>(g: &Dw, s: [(&CpuStorage, &Layout); 3]) -> Result<Vec<T>> {
            let (x, w) = slices::<T>(s[0], s[1])?;
            let (b, _) = slices::<T>(s[2], s[2])?;
            Ok(forward_bias(g, x, w, Some(b)))
        }
        let s = [(s1, l1), (s2, l2), (s3, l3)];
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(go::<f32>(&g, s)?),
            CpuStorage::F64(_) => CpuStorage::F64(go::<f64>(&g, s)?),
            s => candle_core::bail!("depthwise conv: unsupported dtype {:?}", s.dtype()),
        };
        Ok((out, g.y_shape()))
    }
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
#[path = "depthwise_tests.rs"]
mod tests;
