//! A convolution with BatchNorm folded in ([`FConv`]), as the fused CPU
//! network runs it: im2col + one gemm per chunk in the channel-major
//! `[C, nb*H*W]` layout, bias + residual + ReLU applied in the same pass, and
//! its backward pass (stride-1 "same" convolutions as a convolution with the
//! flipped kernel; the others by a gemm and col2im). A grouped convolution
//! (ResNeXt) is one im2col and one gemm per group on the group's rows:
//! in this layout a group's input channels, output channels and filters
//! are each a contiguous block.

use super::im2col::{col2im_add_strided, gemm, im2col_strided, Geom};
use candle_core::{Result, Tensor};
use gemm::Parallelism;

pub(super) const SEQ: Parallelism = Parallelism::None;

pub(super) fn buf(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// A convolution with BatchNorm folded in.
#[derive(Clone, Debug)]
pub struct FConv {
    /// `[O, C/groups*KH*KW]`.
    pub(crate) w: Vec<f32>,
    /// Per group, the flipped, transposed kernel `[C/groups,
    /// O/groups*KH*KW]` (stride-1 backward).
    wt: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) o: usize,
    /// Input channels, all groups.
    pub(crate) c: usize,
    pub(crate) groups: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) s: usize,
    pub(crate) p: usize,
}

impl FConv {
    /// Weight `[O, C/groups, KH, KW]`, bias `[O]`.
    pub fn new(w: &Tensor, b: &Tensor, stride: usize, pad: usize, groups: usize) -> Result<FConv> {
        let (o, cg, kh, kw) = w.dims4()?;
        if groups == 0 || o % groups != 0 {
            candle_core::bail!("folded conv: {o} filters do not split into {groups} groups")
        }
        let og = o / groups;
        let w = w.flatten_all()?.to_vec1::<f32>()?;
        let b = b.flatten_all()?.to_vec1::<f32>()?;
        let mut wt = vec![0f32; w.len()];
        let per = og * cg * kh * kw;
        for (wg, wtg) in w.chunks_exact(per).zip(wt.chunks_exact_mut(per)) {
            for oi in 0..og {
                for ci in 0..cg {
                    for ki in 0..kh {
                        for kj in 0..kw {
                            wtg[((ci * og + oi) * kh + (kh - 1 - ki)) * kw + (kw - 1 - kj)] =
                                wg[((oi * cg + ci) * kh + ki) * kw + kj];
                        }
                    }
                }
            }
        }
        Ok(FConv {
            w,
            wt,
            b,
            o,
            c: cg * groups,
            groups,
            kh,
            kw,
            s: stride,
            p: pad,
        })
    }

    /// The geometry of one group (all of it without groups).
    pub(super) fn geom(&self, nb: usize, h: usize, w: usize) -> Result<Geom> {
        let (cg, og) = (self.c / self.groups, self.o / self.groups);
        Geom::new(&[nb, cg, h, w], &[og, cg, self.kh, self.kw], self.s, self.p)
    }

    /// y `[O, nb*OH*OW]` = conv(x `[C, nb*H*W]`); `g` from [`FConv::geom`].
    pub(super) fn forward(&self, x: &[f32], g: &Geom, col: &mut Vec<f32>) -> Vec<f32> {
        let (k, nin, n) = (g.k(), g.b * g.in_plane(), g.b * g.out_plane());
        let mut y = vec![0f32; self.o * n];
        for gi in 0..self.groups {
            let x = &x[gi * g.c * nin..][..g.c * nin];
            // A 1x1 stride-1 convolution's input is its own im2col matrix.
            let cols: &[f32] = if g.pointwise() {
                x
            } else {
                let col = buf(col, k * n);
                im2col_cnhw(x, g, col);
                col
            };
            gemm(
                (g.o, n, k),
                &mut y[gi * g.o * n..][..g.o * n],
                (n, 1),
                false,
                &self.w[gi * g.o * k..][..g.o * k],
                (k, 1),
                cols,
                (n, 1),
                SEQ,
            );
        }
        y
    }

    /// dx `[C, nb*H*W]` (+)= the input gradient for dy `[O, nb*OH*OW]`.
    pub(super) fn backward(
        &self,
        dy: &[f32],
        g: &Geom,
        dx: &mut [f32],
        acc: bool,
        col: &mut Vec<f32>,
    ) {
        let (nin, nout) = (g.b * g.in_plane(), g.b * g.out_plane());
        for gi in 0..self.groups {
            let w = &self.w[gi * g.o * g.k()..][..g.o * g.k()];
            let wt = &self.wt[gi * g.o * g.k()..][..g.o * g.k()];
            let dy = &dy[gi * g.o * nout..][..g.o * nout];
            let dx = &mut dx[gi * g.c * nin..][..g.c * nin];
            group_backward((w, wt), dy, g, dx, acc, col);
        }
    }

    /// y += bias (+ residual), then ReLU if asked.
    pub(super) fn epilogue(&self, y: &mut [f32], residual: Option<&[f32]>, relu: bool) {
        let n = y.len() / self.o.max(1);
        for (oi, row) in y.chunks_mut(n.max(1)).enumerate() {
            let b = self.b[oi];
            match (residual, relu) {
                (Some(r), _) => {
                    for (v, &r) in row.iter_mut().zip(&r[oi * n..(oi + 1) * n]) {
                        *v = (*v + b + r).max(0.0);
                    }
                }
                (None, true) => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
                (None, false) => row.iter_mut().for_each(|v| *v += b),
            }
        }
    }
}

/// One group's [`FConv::backward`]: its weight `[O, K]` and flipped kernel.
fn group_backward(
    (w, wt): (&[f32], &[f32]),
    dy: &[f32],
    g: &Geom,
    dx: &mut [f32],
    acc: bool,
    col: &mut Vec<f32>,
) {
    let (k, nin, nout) = (g.k(), g.b * g.in_plane(), g.b * g.out_plane());
    if g.pointwise() {
        // dx [C, n] = w^T [C, O] * dy [O, n]
        gemm(
            (g.c, nin, g.o),
            dx,
            (nin, 1),
            acc,
            w,
            (1, k),
            dy,
            (nin, 1),
            SEQ,
        );
    } else if same(g) {
        // A convolution of dy with the flipped kernel, channels swapped.
        let gt = Geom {
            c: g.o,
            o: g.c,
            ..*g
        };
        let kt = gt.k();
        let col = buf(col, kt * nin);
        im2col_cnhw(dy, &gt, col);
        gemm(
            (g.c, nin, kt),
            dx,
            (nin, 1),
            acc,
            wt,
            (kt, 1),
            col,
            (nin, 1),
            SEQ,
        );
    } else {
        // dcol [K, n_out] = w^T [K, O] * dy [O, n_out], then col2im.
        let dcol = buf(col, k * nout);
        gemm(
            (k, nout, g.o),
            dcol,
            (nout, 1),
            false,
            w,
            (1, k),
            dy,
            (nout, 1),
            SEQ,
        );
        if !acc {
            dx.fill(0.0);
        }
        col2im_add_strided(dcol, g, g.b, (g.in_plane(), nin), dx);
    }
}

/// Stride 1 with "same" padding: the output plane is the input plane.
fn same(g: &Geom) -> bool {
    g.s == 1 && g.kh == g.kw && 2 * g.p + 1 == g.kh && g.oh == g.h && g.ow == g.w
}

/// im2col of a chunk in the `[C, nb*H*W]` layout.
fn im2col_cnhw(x: &[f32], g: &Geom, col: &mut [f32]) {
    if !same(g) {
        return im2col_strided(x, g, g.b, (g.in_plane(), g.b * g.in_plane()), col);
    }
    // Each row of `col` is the channel's planes shifted by one offset: one copy
    // for the whole chunk, then the positions that fall outside their own
    // image (top/bottom rows, left/right columns) set to zero.
    let (h, w, pl) = (g.h, g.w, g.in_plane());
    let n = g.b * pl;
    for ci in 0..g.c {
        let src = &x[ci * n..][..n];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((ci * g.kh + ki) * g.kw + kj) * n..][..n];
                let (dy, dx) = (ki as isize - g.p as isize, kj as isize - g.p as isize);
                let off = dy * w as isize + dx;
                let m = off.unsigned_abs().min(n);
                if off >= 0 {
                    row[..n - m].copy_from_slice(&src[m..]);
                    row[n - m..].fill(0.0);
                } else {
                    row[m..].copy_from_slice(&src[..n - m]);
                    row[..m].fill(0.0);
                }
                let (ry, rx) = (dy.unsigned_abs().min(h), dx.unsigned_abs().min(w));
                // Element loops: these runs are a few floats long, too short
                // for a memset call to pay.
                if dy != 0 {
                    let rows = if dy < 0 { 0..ry } else { h - ry..h };
                    for img in row.chunks_exact_mut(pl) {
                        for v in &mut img[rows.start * w..rows.end * w] {
                            *v = 0.0;
                        }
                    }
                }
                if dx != 0 {
                    // Column x of every row of every image: j = x (mod w).
                    for x in if dx < 0 { 0..rx } else { w - rx..w } {
                        for v in row[x..].iter_mut().step_by(w) {
                            *v = 0.0;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-chunk shifted copy equals the generic row-by-row im2col.
    #[test]
    fn same_padding_im2col_matches_generic() {
        for &(nb, c, h, w, k) in &[
            (3, 2, 5, 4, 3),
            (2, 1, 1, 1, 3),
            (1, 2, 2, 3, 5),
            (4, 3, 7, 7, 3),
        ] {
            let g = Geom::new(&[nb, c, h, w], &[2, c, k, k], 1, k / 2).unwrap();
            assert!(same(&g));
            let x: Vec<f32> = (0..nb * c * h * w).map(|i| i as f32 + 1.0).collect();
            let mut a = vec![f32::NAN; g.k() * nb * h * w];
            let mut b = vec![f32::NAN; a.len()];
            im2col_cnhw(&x, &g, &mut a);
            im2col_strided(&x, &g, nb, (h * w, nb * h * w), &mut b);
            assert_eq!(a, b, "{nb}x{c}x{h}x{w} k{k}");
        }
    }
}
