//! LayerNorm's normalisation on the CPU as one candle custom op with its
//! backward pass: `(x - mean) / sqrt(var + eps)` over one dimension (the
//! channels of an NCHW map for ConvNeXt's `LayerNorm2d`, the last dimension
//! for a ViT's `LayerNorm`), biased variance as torch. Composed of candle's
//! ops the same takes eight passes over the tensor, a strided reduction
//! among them; here it is two (statistics, then output), vectorised along
//! the dimension's inner neighbours. [`layer_norm`] adds the affine part
//! (weight, bias) in the same pass where no gradient flows; otherwise it
//! stays in candle's graph.

use super::storage::values;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// `x` normalised over dimension `dim`.
pub fn normalize(x: &Tensor, dim: usize, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Norm { dim, eps })
}

/// torch's LayerNorm over dimension `dim`, weight and bias (each of that
/// dimension's size) included, as one pass. For inference and the
/// hand-written gradient only: it has no backward, so none of the three
/// may need a gradient.
pub fn layer_norm(x: &Tensor, dim: usize, eps: f64, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let c = x.dim(dim)?;
    if w.dims() != [c] || b.dims() != [c] || w.dtype() != x.dtype() || b.dtype() != x.dtype() {
        candle_core::bail!(
            "layer norm: weight {:?} and bias {:?} for dimension {dim} of {:?} ({:?})",
            w.dims(),
            b.dims(),
            x.dims(),
            x.dtype()
        )
    }
    if [x, w, b].iter().any(|t| t.track_op()) {
        candle_core::bail!("layer norm with weight and bias: no gradient through this op")
    }
    x.contiguous()?
        .apply_op3_no_bwd(&w.contiguous()?, &b.contiguous()?, &NormAffine { dim, eps })
}

struct NormAffine {
    dim: usize,
    eps: f64,
}

impl candle_core::CustomOp3 for NormAffine {
    fn name(&self) -> &'static str {
        "semcon-layer-norm-affine"
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
        let parts = split(l1.dims(), self.dim);
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward_affine(
                values::<f32>(s1, l1, "layer norm")?,
                parts,
                self.eps,
                Some((values(s2, l2, "layer norm")?, values(s3, l3, "layer norm")?)),
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward_affine(
                values::<f64>(s1, l1, "layer norm")?,
                parts,
                self.eps,
                Some((values(s2, l2, "layer norm")?, values(s3, l3, "layer norm")?)),
            )),
            _ => candle_core::bail!("layer norm: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// The gradient w.r.t. `x` of [`normalize`]`(x, dim, eps)` given the
/// gradient `g` at its output.
pub fn normalize_grad(x: &Tensor, dim: usize, eps: f64, g: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&g.contiguous()?, &NormGrad { dim, eps, w: None })
}

/// The gradient w.r.t. `x` of [`layer_norm`]`(x, dim, eps, w, b)` given the
/// gradient `g` at its output: the weight's product in the same pass.
pub fn layer_norm_grad(x: &Tensor, dim: usize, eps: f64, w: &Tensor, g: &Tensor) -> Result<Tensor> {
    let c = x.dims().get(dim).copied().unwrap_or(0);
    if w.dims() != [c] {
        candle_core::bail!("layer norm grad: weight {:?} for {c} values", w.dims())
    }
    let w = w.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    x.contiguous()?.apply_op2_no_bwd(
        &g.contiguous()?,
        &NormGrad {
            dim,
            eps,
            w: Some(w),
        },
    )
}

struct Norm {
    dim: usize,
    eps: f64,
}

/// (outer, c, inner) around `dim` of a contiguous shape.
fn split(dims: &[usize], dim: usize) -> (usize, usize, usize) {
    let outer = dims[..dim].iter().product();
    let inner = dims[dim + 1..].iter().product();
    (outer, dims[dim], inner)
}

/// Per inner position of one outer block `x` (`c` x `inner`): the mean and
/// 1/sqrt(var + eps).
fn stats<T: WithDType>(x: &[T], c: usize, inner: usize, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0f64; inner];
    for row in x.chunks_exact(inner) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v.to_f64();
        }
    }
    mean.iter_mut().for_each(|m| *m /= c as f64);
    let mut var = vec![0f64; inner];
    for row in x.chunks_exact(inner) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            let d = v.to_f64() - m;
            *s += d * d;
        }
    }
    let rstd = var
        .iter()
        .map(|s| 1.0 / (s / c as f64 + eps).sqrt())
        .collect();
    (mean, rstd)
}

/// The sum of `f(i)` for `i` in `0..n`, in eight interleaved partial sums
/// (a vectorised reduction; one running sum would wait on every add).
#[inline(always)]
fn sum_lanes(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0f64; 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
    }
    acc.iter().sum::<f64>() + (full..n).map(f).sum::<f64>()
}

/// The mean and 1/sqrt(var + eps) of one contiguous row (the last
/// dimension: `inner` = 1).
fn row_stats<T: WithDType>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len();
    let mean = sum_lanes(n, |i| row[i].to_f64()) / n as f64;
    let var = sum_lanes(n, |i| {
        let d = row[i].to_f64() - mean;
        d * d
    }) / n as f64;
    (mean, 1.0 / (var + eps).sqrt())
}

fn forward<T: WithDType>(x: &[T], parts: (usize, usize, usize), eps: f64) -> Vec<T> {
    forward_affine(x, parts, eps, None)
}

/// The normalised `x`, then (with `affine`) times the weight plus the bias
/// of each position along the dimension: `xhat * w + b`, as torch's
/// LayerNorm, rounded once. Every value is written once, into memory never
/// zero-filled.
fn forward_affine<T: WithDType>(
    x: &[T],
    (_, c, inner): (usize, usize, usize),
    eps: f64,
    affine: Option<(&[T], &[T])>,
) -> Vec<T> {
    let block = c * inner;
    let mut y: Vec<T> = Vec::with_capacity(x.len());
    if block == 0 {
        return y;
    }
    let out = &mut y.spare_capacity_mut()[..x.len()];
    // (w, b) of position `i` along the dimension.
    let wb = |i: usize| affine.map_or((1.0, 0.0), |(w, b)| (w[i].to_f64(), b[i].to_f64()));
    if inner == 1 {
        out.par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .for_each(|(yr, xr)| {
                let (mean, rstd) = row_stats(xr, eps);
                match affine {
                    None => {
                        for (o, v) in yr.iter_mut().zip(xr) {
                            o.write(T::from_f64((v.to_f64() - mean) * rstd));
                        }
                    }
                    Some((w, b)) => {
                        for (((o, v), w), b) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                            let h = (v.to_f64() - mean) * rstd;
                            o.write(T::from_f64(h * w.to_f64() + b.to_f64()));
                        }
                    }
                }
            });
    } else {
        out.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(yb, xb)| {
                let (mean, rstd) = stats(xb, c, inner, eps);
                for (ch, (yr, xr)) in yb
                    .chunks_exact_mut(inner)
                    .zip(xb.chunks_exact(inner))
                    .enumerate()
                {
                    let (w, b) = wb(ch);
                    for (i, (o, v)) in yr.iter_mut().zip(xr).enumerate() {
                        o.write(T::from_f64((v.to_f64() - mean[i]) * rstd[i] * w + b));
                    }
                }
            });
    }
    // SAFETY: each block (or row) wrote every one of its values.
    unsafe { y.set_len(x.len()) };
    y
}

/// dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), means over the
/// dimension, where gw = g * w (w per position along the dimension, or 1).
fn backward<T: WithDType>(
    x: &[T],
    g: &[T],
    (_, c, inner): (usize, usize, usize),
    eps: f64,
    w: Option<&[f64]>,
) -> Vec<T> {
    let block = c * inner;
    let mut out: Vec<T> = Vec::with_capacity(x.len());
    if block == 0 {
        return out;
    }
    let ones;
    let w = match w {
        Some(w) => w,
        None => {
            ones = vec![1f64; c];
            &ones
        }
    };
    // every value written once below, never zero-filled first
    let dx = &mut out.spare_capacity_mut()[..x.len()];
    if inner == 1 {
        let n = c as f64;
        dx.par_chunks_mut(c)
            .zip(x.par_chunks(c).zip(g.par_chunks(c)))
            .for_each(|(dr, (xr, gr))| {
                let (mean, rstd) = row_stats(xr, eps);
                let gw = |i: usize| gr[i].to_f64() * w[i];
                let gm = sum_lanes(c, gw) / n;
                let gxm = sum_lanes(c, |i| gw(i) * (xr[i].to_f64() - mean) * rstd) / n;
                for (i, (d, xv)) in dr.iter_mut().zip(xr).enumerate() {
                    let xh = (xv.to_f64() - mean) * rstd;
                    d.write(T::from_f64(rstd * (gw(i) - gm - xh * gxm)));
                }
            });
        // SAFETY: every row wrote each of its values.
        unsafe { out.set_len(x.len()) };
        return out;
    }
    dx.par_chunks_mut(block)
        .zip(x.par_chunks(block).zip(g.par_chunks(block)))
        .for_each(|(db, (xb, gb))| {
            let (mean, rstd) = stats(xb, c, inner, eps);
            let mut gm = vec![0f64; inner];
            let mut gxm = vec![0f64; inner];
            for ((xr, gr), &wc) in xb.chunks_exact(inner).zip(gb.chunks_exact(inner)).zip(w) {
                for i in 0..inner {
                    let xh = (xr[i].to_f64() - mean[i]) * rstd[i];
                    let gw = gr[i].to_f64() * wc;
                    gm[i] += gw;
                    gxm[i] += gw * xh;
                }
            }
            let n = c as f64;
            for (((dr, xr), gr), &wc) in db
                .chunks_exact_mut(inner)
                .zip(xb.chunks_exact(inner))
                .zip(gb.chunks_exact(inner))
                .zip(w)
            {
                for i in 0..inner {
                    let xh = (xr[i].to_f64() - mean[i]) * rstd[i];
                    let gw = gr[i].to_f64() * wc;
                    dr[i].write(T::from_f64(rstd[i] * (gw - gm[i] / n - xh * gxm[i] / n)));
                }
            }
        });
    // SAFETY: every block wrote each of its values.
    unsafe { out.set_len(x.len()) };
    out
}

impl CustomOp1 for Norm {
    fn name(&self) -> &'static str {
        "semcon-layer-norm"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let parts = split(l.dims(), self.dim);
        let out = match s {
            CpuStorage::F32(_) => {
                CpuStorage::F32(forward(values::<f32>(s, l, "layer norm")?, parts, self.eps))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(forward(values::<f64>(s, l, "layer norm")?, parts, self.eps))
            }
            _ => candle_core::bail!("layer norm: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let g = g.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(
            &g,
            &NormGrad {
                dim: self.dim,
                eps: self.eps,
                w: None,
            },
        )?))
    }
}

/// (x, dy) -> dx, the weight `w` (one per position along `dim`) folded in.
struct NormGrad {
    dim: usize,
    eps: f64,
    w: Option<Vec<f64>>,
}

impl candle_core::CustomOp2 for NormGrad {
    fn name(&self) -> &'static str {
        "semcon-layer-norm-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("layer norm grad: {:?} vs {:?}", l1.dims(), l2.dims())
        }
        let parts = split(l1.dims(), self.dim);
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(backward(
                values::<f32>(s1, l1, "layer norm")?,
                values::<f32>(s2, l2, "layer norm")?,
                parts,
                self.eps,
                self.w.as_deref(),
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(backward(
                values::<f64>(s1, l1, "layer norm")?,
                values::<f64>(s2, l2, "layer norm")?,
                parts,
                self.eps,
                self.w.as_deref(),
            )),
            _ => candle_core::bail!("layer norm grad: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Against the same normalisation composed of candle's ops, forward and
    /// input gradient, in f64, over channels (NCHW) and the last dimension.
    #[test]
    fn matches_composed_ops() {
        let dev = Device::Cpu;
        for (shape, dim) in [(vec![2, 5, 3, 4], 1), (vec![3, 7, 6], 2), (vec![4, 9], 1)] {
            let x = Var::from_tensor(
                &(Tensor::randn(0f64, 1., shape.as_slice(), &dev).unwrap() * 3.0).unwrap(),
            )
            .unwrap();
            let a = normalize(x.as_tensor(), dim, 1e-6).unwrap();
            let mean = x.as_tensor().mean_keepdim(dim).unwrap();
            let xc = x.as_tensor().broadcast_sub(&mean).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim(dim).unwrap();
            let b = xc
                .broadcast_div(&(var + 1e-6).unwrap().sqrt().unwrap())
                .unwrap();
            let d = crate::model::cpu::testing::max_diff;
            assert!(d(&a, &b) < 1e-12, "forward {shape:?}");
            let r = Tensor::randn(0f64, 1., shape.as_slice(), &dev).unwrap();
            let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(
                d(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-10,
                "gradient {shape:?}"
            );
            // with weight and bias in the same pass: as normalize * w + b
            let c = shape[dim];
            let w = Tensor::randn(0f64, 1., c, &dev).unwrap();
            let bias = Tensor::randn(0f64, 1., c, &dev).unwrap();
            let mut per = vec![1; shape.len()];
            per[dim] = c;
            let want = b
                .detach()
                .broadcast_mul(&w.reshape(per.as_slice()).unwrap())
                .unwrap()
                .broadcast_add(&bias.reshape(per.as_slice()).unwrap())
                .unwrap();
            let got = layer_norm(&x.as_tensor().detach(), dim, 1e-6, &w, &bias).unwrap();
            assert!(d(&got, &want) < 1e-12, "affine {shape:?}");
            let got32 = layer_norm(
                &x.as_tensor()
                    .detach()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap(),
                dim,
                1e-6,
                &w.to_dtype(candle_core::DType::F32).unwrap(),
                &bias.to_dtype(candle_core::DType::F32).unwrap(),
            )
            .unwrap();
            let got32 = got32.to_dtype(candle_core::DType::F64).unwrap();
            assert!(d(&got32, &want) < 1e-5, "affine f32 {shape:?}");
            // the gradient with the weight folded in: as autograd through
            // normalize * w + b
            let composed = b
                .broadcast_mul(&w.reshape(per.as_slice()).unwrap())
                .unwrap();
            let gw = (&composed * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let got = layer_norm_grad(&x.as_tensor().detach(), dim, 1e-6, &w, &r).unwrap();
            assert!(
                d(&got, gw.get(&x).unwrap()) < 1e-10,
                "weighted gradient {shape:?}"
            );
            // a weight of the wrong length: an error, not a misread
            let short = w.narrow(0, 0, c - 1).unwrap();
            assert!(layer_norm_grad(&x.as_tensor().detach(), dim, 1e-6, &short, &r).is_err());
            // no gradient through the one-pass op: refused, not silently wrong
            assert!(layer_norm(x.as_tensor(), dim, 1e-6, &w, &bias).is_err());
        }
    }
}
