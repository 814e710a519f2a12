//! The convolution's CPU kernels: im2col into per-thread scratch buffers
//! and one gemm per chunk of images, chunks in parallel (or one parallel
//! gemm per chunk when there are too few); the forward (a bias, if any, as
//! the start of each output plane), the input gradient (gemm with the
//! transposed weight, then col2im) and the weight gradient (gemm of the
//! output gradient with the im2col columns, per-chunk partial sums added).

use crate::model::cpu::im2col::{col2im_add, gather_planes, gemm, im2col, scatter_planes, Geom};
use candle_core::WithDType;
use gemm::Parallelism;
use rayon::prelude::*;

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
pub(super) struct Scratch<T> {
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
pub(super) trait Elem: WithDType {
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
pub(super) fn forward<T: Elem>(x: &[T], w: &[T], g: &Geom) -> Vec<T> {
    forward_bias(x, w, None, g)
}

/// y = conv(x, w) (+ bias per output channel). With a bias, each chunk's
/// output planes are first written with their channel's bias and the gemm
/// adds onto them: no zero-fill of the output and no second pass for the
/// bias.
pub(super) fn forward_bias<T: Elem>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Geom) -> Vec<T> {
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
pub(super) fn grad_input<T: Elem>(dy: &[T], w: &[T], g: &Geom) -> Vec<T> {
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
pub(super) fn grad_weight<T: Elem>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
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
