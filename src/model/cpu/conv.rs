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

use super::im2col::{col2im_add, gather_planes, gemm, im2col, scatter_planes, Geom};
use super::storage::values;
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};
use gemm::Parallelism;
use rayon::prelude::*;

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

/// Images per gemm are chosen so that a gemm has about this many columns.
const TARGET_COLS: usize = 512;

/// How a batch is split: `nb` images per gemm; `outer`: chunks run in parallel
/// (each gemm single-threaded), else chunks run in turn with a parallel gemm.
#[derive(Clone, Copy, Debug)]
struct Plan {
    nb: usize,
    outer: bool,
    threads: usize,
}

impl Plan {
    fn new(g: &Geom) -> Plan {
        let threads = rayon::current_num_threads().max(1);
        let mut nb = TARGET_COLS
            .div_ceil(g.out_plane().max(1))
            .clamp(1, g.b.max(1));
        // Enough chunks for every thread when the batch allows it.
        nb = nb.min(g.b.div_ceil(threads)).max(1);
        // Near that size, the chunk size that leaves the busiest thread the
        // fewest images (3 chunks of 11 on 2 threads: one thread does 22
        // images while the other waits after 11; 4 of 8: 16 each).
        let busiest = |nb: usize| g.b.div_ceil(nb).div_ceil(threads) * nb;
        nb = (nb.div_ceil(2)..=(2 * nb).min(g.b.div_ceil(threads)).max(nb))
            .min_by_key(|&m| (busiest(m), m.abs_diff(nb)))
            .unwrap_or(nb);
        let chunks = g.b.div_ceil(nb);
        Plan {
            nb,
            outer: threads > 1 && chunks >= threads,
            threads,
        }
    }
    fn chunks(&self, b: usize) -> Vec<(usize, usize)> {
        (0..b)
            .step_by(self.nb)
            .map(|b0| (b0, self.nb.min(b - b0)))
            .collect()
    }
    /// Parallelism of one gemm.
    fn inner(&self) -> Parallelism {
        if self.outer || self.threads == 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(self.threads)
        }
    }
}

/// Per-thread buffers, kept between calls (no page faults for fresh memory on
/// every chunk); they grow to the largest chunk seen on the thread.
struct Scratch<T> {
    a: Vec<T>,
    b: Vec<T>,
}

impl<T: WithDType> Scratch<T> {
    fn new() -> Self {
        Scratch {
            a: Vec::new(),
            b: Vec::new(),
        }
    }
}

/// The element types of the CPU path, each with its thread's scratch buffers.
trait Elem: WithDType {
    fn with_scratch<R>(f: impl FnOnce(&mut Scratch<Self>) -> R) -> R;
}

macro_rules! elem {
    ($t:ty, $key:ident) => {
        thread_local! {
            static $key: std::cell::RefCell<Scratch<$t>> = std::cell::RefCell::new(Scratch::new());
        }
        impl Elem for $t {
            fn with_scratch<R>(f: impl FnOnce(&mut Scratch<Self>) -> R) -> R {
                $key.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut s) => f(&mut s),
                    // Re-entered on this thread (a rayon worker that stole another conv's
                    // chunk while waiting): private buffers.
                    Err(_) => f(&mut Scratch::new()),
                })
            }
        }
    };
}
elem!(f32, SCRATCH_F32);
elem!(f64, SCRATCH_F64);

fn buf<T: WithDType>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::zero());
    }
    &mut v[..len]
}

/// Runs `f(b0, nb, parallelism, scratch)` for each chunk of images.
fn for_chunks<T: Elem>(
    g: &Geom,
    plan: &Plan,
    f: impl Fn(usize, usize, Parallelism, &mut Scratch<T>) + Sync,
) {
    let chunks = plan.chunks(g.b);
    if plan.outer {
        chunks
            .into_par_iter()
            .with_max_len(1)
            .for_each(|(b0, nb)| T::with_scratch(|s| f(b0, nb, Parallelism::None, s)));
    } else {
        T::with_scratch(|s| {
            for (b0, nb) in chunks {
                f(b0, nb, plan.inner(), s);
            }
        })
    }
}

/// A raw pointer that may cross threads; every user writes a disjoint range.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// # Safety
    /// The range must be inside the allocation and written by no one else meanwhile.
    unsafe fn slice<'a>(self, start: usize, len: usize) -> &'a mut [T] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
    /// Writes `planes` planes of `pl` values from `start`, plane `p` (counted
    /// from `start`) all `value(p)`, without reading (the memory may be
    /// uninitialised).
    ///
    /// # Safety
    /// As [`SendPtr::slice`] for the range `start..start + planes * pl`.
    unsafe fn fill_planes(self, start: usize, planes: usize, pl: usize, value: impl Fn(usize) -> T)
    where
        T: Copy,
    {
        for p in 0..planes {
            let v = value(p);
            let dst = self.0.add(start + p * pl);
            for i in 0..pl {
                dst.add(i).write(v);
            }
        }
    }
}

/// y = conv(x, w).
fn forward<T: Elem>(x: &[T], w: &[T], g: &Geom) -> Vec<T> {
    forward_bias(x, w, None, g)
}

/// y = conv(x, w) (+ bias per output channel). With a bias, each chunk's
/// output planes are first written with their channel's bias and the gemm
/// adds onto them: no zero-fill of the output and no second pass for the
/// bias.
fn forward_bias<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Vec<T> {
    let (k, pl) = (g.k(), g.out_plane());
    let len = g.b * g.o * pl;
    let mut y: Vec<T> = match bias {
        Some(_) => Vec::with_capacity(len),
        None => vec![T::zero(); len],
    };
    if len == 0 {
        return y;
    }
    let plan = Plan::new(g);
    let yp = SendPtr(y.as_mut_ptr());
    for_chunks(g, &plan, |b0, nb, par, s: &mut Scratch<T>| {
        let n = nb * pl;
        let xs = &x[b0 * g.c * g.in_plane()..][..nb * g.c * g.in_plane()];
        if let Some(bias) = bias {
            // SAFETY: chunks are disjoint ranges of images inside the
            // allocation; raw writes initialise them before any reference.
            unsafe { yp.fill_planes(b0 * g.o * pl, nb * g.o, pl, |p| bias[p % g.o]) };
        }
        // SAFETY: chunks are disjoint ranges of images, initialised (zeros
        // or the bias).
        let ys = unsafe { yp.slice(b0 * g.o * pl, nb * g.o * pl) };
        let add = bias.is_some();
        let col: &[T] = if g.pointwise() && nb == 1 {
            xs
        } else {
            let col = buf(&mut s.a, k * n);
            im2col(xs, g, nb, col);
            col
        };
        if nb == 1 {
            gemm((g.o, n, k), ys, (n, 1), add, w, (k, 1), col, (n, 1), par);
        } else {
            let tmp = buf(&mut s.b, g.o * n);
            gemm((g.o, n, k), tmp, (n, 1), false, w, (k, 1), col, (n, 1), par);
            if add {
                add_planes(tmp, g.o, pl, nb, ys);
            } else {
                scatter_planes(tmp, g.o, pl, nb, ys);
            }
        }
    });
    if bias.is_some() {
        // SAFETY: every chunk wrote its planes (fill_planes) before the gemm.
        unsafe { y.set_len(len) };
    }
    y
}

/// [`scatter_planes`] adding onto `dst` instead of overwriting it.
fn add_planes<T: WithDType>(src: &[T], o: usize, pl: usize, nb: usize, dst: &mut [T]) {
    for img in 0..nb {
        for oc in 0..o {
            let d = &mut dst[(img * o + oc) * pl..][..pl];
            for (a, &v) in d.iter_mut().zip(&src[oc * nb * pl + img * pl..][..pl]) {
                *a += v;
            }
        }
    }
}

/// dx from dy and w.
fn grad_input<T: Elem>(dy: &[T], w: &[T], g: &Geom) -> Vec<T> {
    let (k, pl) = (g.k(), g.out_plane());
    let mut dx = vec![T::zero(); g.b * g.c * g.in_plane()];
    if dx.is_empty() || pl == 0 || g.o == 0 {
        return dx;
    }
    let plan = Plan::new(g);
    let dxp = SendPtr(dx.as_mut_ptr());
    for_chunks(g, &plan, |b0, nb, par, s: &mut Scratch<T>| {
        let n = nb * pl;
        // SAFETY: chunks are disjoint ranges of images.
        let dxs = unsafe { dxp.slice(b0 * g.c * g.in_plane(), nb * g.c * g.in_plane()) };
        let dys = &dy[b0 * g.o * pl..][..nb * g.o * pl];
        let Scratch { a, b } = s;
        let dyc: &[T] = if nb == 1 {
            dys
        } else {
            let t = buf(b, g.o * n);
            gather_planes(dys, g.o, pl, nb, t);
            t
        };
        // dcol [K, n] = w^T [K, O] * dy [O, n]
        if g.pointwise() && nb == 1 {
            gemm((k, n, g.o), dxs, (n, 1), false, w, (1, k), dyc, (n, 1), par);
        } else {
            let dcol = buf(a, k * n);
            gemm(
                (k, n, g.o),
                dcol,
                (n, 1),
                false,
                w,
                (1, k),
                dyc,
                (n, 1),
                par,
            );
            col2im_add(dcol, g, nb, dxs);
        }
    });
    dx
}

/// dw from x and dy; sums over fixed groups of images, so the result does not
/// depend on scheduling.
fn grad_weight<T: Elem>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    let (k, pl) = (g.k(), g.out_plane());
    let len = g.o * k;
    if len == 0 || g.b == 0 || pl == 0 {
        return vec![T::zero(); len];
    }
    let plan = Plan::new(g);
    let chunks = plan.chunks(g.b);
    let groups = if plan.outer {
        plan.threads.min(chunks.len())
    } else {
        1
    };
    let per = chunks.len().div_ceil(groups);
    let partial = |gi: usize| {
        let mut dw = vec![T::zero(); len];
        T::with_scratch(|s| {
            for (i, &(b0, nb)) in chunks.iter().enumerate().skip(gi * per).take(per) {
                let n = nb * pl;
                let xs = &x[b0 * g.c * g.in_plane()..][..nb * g.c * g.in_plane()];
                let dys = &dy[b0 * g.o * pl..][..nb * g.o * pl];
                let Scratch { a, b } = &mut *s;
                let col: &[T] = if g.pointwise() && nb == 1 {
                    xs
                } else {
                    let col = buf(a, k * n);
                    im2col(xs, g, nb, col);
                    col
                };
                let dyc: &[T] = if nb == 1 {
                    dys
                } else {
                    let t = buf(b, g.o * n);
                    gather_planes(dys, g.o, pl, nb, t);
                    t
                };
                // dw [O, K] += dy [O, n] * col^T [n, K]
                gemm(
                    (g.o, k, n),
                    &mut dw,
                    (k, 1),
                    i > gi * per,
                    dyc,
                    (n, 1),
                    col,
                    (1, n),
                    plan.inner(),
                );
            }
        });
        dw
    };
    let mut parts: Vec<Vec<T>> = if groups > 1 {
        (0..groups)
            .into_par_iter()
            .with_max_len(1)
            .map(partial)
            .collect()
    } else {
        vec![partial(0)]
    };
    let mut dw = parts.swap_remove(0);
    for p in &parts {
        for (a, &v) in dw.iter_mut().zip(p) {
            *a += v;
        }
    }
    dw
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
#[path = "conv_tests.rs"]
mod tests;
