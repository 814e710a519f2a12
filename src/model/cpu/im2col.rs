//! Layout transforms and the gemm wrapper both CPU convolution paths use
//! (candle's graph through [`super::conv`], the fused network through
//! [`super::fused`]): the shapes of one convolution ([`Geom`]), im2col and
//! col2im for any placement of the image planes, and plane gather/scatter.

use candle_core::{Result, Shape, WithDType};
use gemm::Parallelism;

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub(crate) b: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) o: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) s: usize,
    pub(crate) p: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Geom {
    pub(crate) fn new(x: &[usize], w: &[usize], s: usize, p: usize) -> Result<Geom> {
        let (&[b, c, h, wd], &[o, ci, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expected a 4-d input and weight, got {x:?} and {w:?}")
        };
        if c != ci {
            candle_core::bail!("conv2d: the input has {c} channels but the weight {w:?} takes {ci}")
        }
        if s == 0 || kh == 0 || kw == 0 {
            candle_core::bail!(
                "conv2d: stride and kernel size must be positive (stride {s}, weight {w:?})"
            )
        }
        if h + 2 * p < kh || wd + 2 * p < kw {
            candle_core::bail!(
                "conv2d: input {x:?} with padding {p} is smaller than the kernel {w:?}"
            )
        }
        Ok(Geom {
            b,
            c,
            h,
            w: wd,
            o,
            kh,
            kw,
            s,
            p,
            oh: (h + 2 * p - kh) / s + 1,
            ow: (wd + 2 * p - kw) / s + 1,
        })
    }
    /// Rows of the im2col matrix (C*KH*KW).
    pub(crate) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub(crate) fn in_plane(&self) -> usize {
        self.h * self.w
    }
    pub(crate) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }
    /// 1x1, stride 1, no padding: the input of an image is its own im2col matrix.
    pub(crate) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.s == 1 && self.p == 0
    }
    /// Output columns `lo..hi` whose input column `ox*s + kj - p` lies inside the image.
    pub(crate) fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let lo = if self.p > kj {
            (self.p - kj).div_ceil(self.s)
        } else {
            0
        };
        let hi = if self.w + self.p > kj {
            (self.w + self.p - kj - 1) / self.s + 1
        } else {
            0
        };
        let lo = lo.min(self.ow);
        (lo, hi.min(self.ow).max(lo))
    }
    pub(crate) fn x_shape(&self) -> Shape {
        (self.b, self.c, self.h, self.w).into()
    }
    pub(crate) fn w_shape(&self) -> Shape {
        (self.o, self.c, self.kh, self.kw).into()
    }
    pub(crate) fn y_shape(&self) -> Shape {
        (self.b, self.o, self.oh, self.ow).into()
    }
}

/// Column-major-agnostic gemm: dst (m x n) (+)= lhs (m x k) * rhs (k x n), all
/// given by row and column strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    (dst_rs, dst_cs): (usize, usize),
    accumulate: bool,
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, r: usize, c: usize| (r - 1) * rs + (c - 1) * cs;
    assert!(last(dst_rs, dst_cs, m, n) < dst.len());
    if k > 0 {
        assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len() && last(rhs_rs, rhs_cs, k, n) < rhs.len());
    }
    // SAFETY: the asserts above keep every access inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

/// im2col of `nb` images `x` ([nb, C, H, W]) into `col` ([C*KH*KW, nb*OH*OW]):
/// col[(ci*KH + ki)*KW + kj][img*OH*OW + oy*OW + ox] = x[img, ci, oy*s + ki - p, ox*s + kj - p], 0 outside.
pub(crate) fn im2col<T: WithDType>(x: &[T], g: &Geom, nb: usize, col: &mut [T]) {
    im2col_strided(x, g, nb, (g.c * g.in_plane(), g.in_plane()), col)
}

/// `im2col` for any placement of the input planes: plane (img, ci) starts at
/// `img * strides.0 + ci * strides.1` (NCHW: (C*H*W, H*W); CNHW: (H*W, nb*H*W)).
pub(crate) fn im2col_strided<T: WithDType>(
    x: &[T],
    g: &Geom,
    nb: usize,
    strides: (usize, usize),
    col: &mut [T],
) {
    let (pl, n) = (g.out_plane(), nb * g.out_plane());
    for ci in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((ci * g.kh + ki) * g.kw + kj) * n..][..n];
                let (lo, hi) = g.valid_cols(kj);
                for img in 0..nb {
                    let src = &x[img * strides.0 + ci * strides.1..][..g.in_plane()];
                    for oy in 0..g.oh {
                        let d = &mut row[img * pl + oy * g.ow..][..g.ow];
                        let iy = oy * g.s + ki;
                        if iy < g.p || iy - g.p >= g.h {
                            d.fill(T::zero());
                            continue;
                        }
                        let srow = &src[(iy - g.p) * g.w..][..g.w];
                        d[..lo].fill(T::zero());
                        d[hi..].fill(T::zero());
                        if lo == hi {
                            // no column of this kernel tap falls inside the row
                        } else if g.s == 1 {
                            let ix = lo + kj - g.p;
                            d[lo..hi].copy_from_slice(&srow[ix..ix + hi - lo]);
                        } else {
                            for (ox, v) in d[lo..hi].iter_mut().enumerate() {
                                *v = srow[(ox + lo) * g.s + kj - g.p];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: adds the columns back into `dx` ([nb, C, H, W]).
pub(crate) fn col2im_add<T: WithDType>(col: &[T], g: &Geom, nb: usize, dx: &mut [T]) {
    col2im_add_strided(col, g, nb, (g.c * g.in_plane(), g.in_plane()), dx)
}

/// The adjoint of `im2col_strided` (same plane placement).
pub(crate) fn col2im_add_strided<T: WithDType>(
    col: &[T],
    g: &Geom,
    nb: usize,
    strides: (usize, usize),
    dx: &mut [T],
) {
    let (pl, n) = (g.out_plane(), nb * g.out_plane());
    for ci in 0..g.c {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &col[((ci * g.kh + ki) * g.kw + kj) * n..][..n];
                let (lo, hi) = g.valid_cols(kj);
                for img in 0..nb {
                    let dst = &mut dx[img * strides.0 + ci * strides.1..][..g.in_plane()];
                    for oy in 0..g.oh {
                        let iy = oy * g.s + ki;
                        if iy < g.p || iy - g.p >= g.h {
                            continue;
                        }
                        let d = &row[img * pl + oy * g.ow..][..g.ow];
                        let drow = &mut dst[(iy - g.p) * g.w..][..g.w];
                        if lo == hi {
                            // nothing of this kernel tap lands inside the row
                        } else if g.s == 1 {
                            let ix = lo + kj - g.p;
                            for (a, &v) in drow[ix..ix + hi - lo].iter_mut().zip(&d[lo..hi]) {
                                *a += v;
                            }
                        } else {
                            for (ox, &v) in d[lo..hi].iter().enumerate() {
                                drow[(ox + lo) * g.s + kj - g.p] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `[nb, O, P]` (images of `src`) to `[O, nb*P]` in `dst`.
pub(crate) fn gather_planes<T: WithDType>(
    src: &[T],
    o: usize,
    pl: usize,
    nb: usize,
    dst: &mut [T],
) {
    for img in 0..nb {
        for oc in 0..o {
            dst[oc * nb * pl + img * pl..][..pl].copy_from_slice(&src[(img * o + oc) * pl..][..pl]);
        }
    }
}

/// `[O, nb*P]` to `[nb, O, P]`.
pub(crate) fn scatter_planes<T: WithDType>(
    src: &[T],
    o: usize,
    pl: usize,
    nb: usize,
    dst: &mut [T],
) {
    for img in 0..nb {
        for oc in 0..o {
            dst[(img * o + oc) * pl..][..pl].copy_from_slice(&src[oc * nb * pl + img * pl..][..pl]);
        }
    }
}
