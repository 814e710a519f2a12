//! A per-channel affine map of an NCHW tensor on every core, `x * s[c] +
//! b[c]` with either part optional, in one pass: a convolution's bias,
//! LayerNorm2d's weight and bias, ConvNeXt's layer scale. candle's
//! broadcast ops make one pass (and one allocation) per part.

use candle_core::{Result, Tensor, WithDType};
use rayon::prelude::*;

/// `x * s + b` per channel (dimension 1) of `x` `[N, C, ...]`; `s`, `b`
/// `[C]`. Not differentiable: for tensors no gradient flows through.
pub fn channel_affine(x: &Tensor, s: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle_core::bail!("channel affine: {dims:?} has no channel dimension")
    }
    let c = dims[1];
    for v in [s, b].into_iter().flatten() {
        if v.dims() != [c] {
            candle_core::bail!("channel affine: {:?} for {c} channels", v.dims())
        }
    }
    let plane: usize = dims[2..].iter().product();
    let x = x.contiguous()?;
    macro_rules! run {
        ($t:ty) => {{
            let (st, l) = x.storage_and_layout();
            let (candle_core::Storage::Cpu(cpu), Some((a0, a1))) = (&*st, l.contiguous_offsets())
            else {
                candle_core::bail!("channel affine: not a contiguous CPU tensor")
            };
            let xs = &cpu.as_slice::<$t>()?[a0..a1];
            let sv = s
                .map(|t| t.to_dtype(x.dtype())?.to_vec1::<$t>())
                .transpose()?;
            let bv = b
                .map(|t| t.to_dtype(x.dtype())?.to_vec1::<$t>())
                .transpose()?;
            let y = affine(xs, (c, plane), sv.as_deref(), bv.as_deref());
            drop(st);
            Tensor::from_vec(y, dims.as_slice(), x.device())
        }};
    }
    match x.dtype() {
        candle_core::DType::F32 => run!(f32),
        candle_core::DType::F64 => run!(f64),
        t => candle_core::bail!("channel affine: {t:?} is not f32 or f64"),
    }
}

/// The mean of each plane of `x` `[N, C, H, W]`, `[N, C]`, on every core
/// (global average pooling; candle's reductions run on one thread). With
/// `y`, the mean of `x * y` instead. Not differentiable.
pub fn plane_mean(x: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if let Some(y) = y {
        if y.dims() != x.dims() || y.dtype() != x.dtype() {
            candle_core::bail!("plane mean: {:?} times {:?}", x.dims(), y.dims())
        }
    }
    let plane = h * w;
    let x = x.contiguous()?;
    let y = y.map(|y| y.contiguous()).transpose()?;
    macro_rules! run {
        ($t:ty) => {{
            let (sx, lx) = x.storage_and_layout();
            let xs = cpu_slice::<$t>(&sx, lx)?;
            let guard = y.as_ref().map(|y| y.storage_and_layout());
            let ys = match &guard {
                Some((sy, ly)) => Some(cpu_slice::<$t>(sy, ly)?),
                None => None,
            };
            let mut m = vec![0 as $t; n * c];
            if plane > 0 {
                m.par_iter_mut().enumerate().for_each(|(p, o)| {
                    let xp = &xs[p * plane..][..plane];
                    let s: f64 = match ys {
                        Some(ys) => xp
                            .iter()
                            .zip(&ys[p * plane..][..plane])
                            .map(|(a, b)| (*a as f64) * (*b as f64))
                            .sum(),
                        None => xp.iter().map(|a| *a as f64).sum(),
                    };
                    *o = (s / plane as f64) as $t;
                });
            }
            Tensor::from_vec(m, (n, c), x.device())
        }};
    }
    match x.dtype() {
        candle_core::DType::F32 => run!(f32),
        candle_core::DType::F64 => run!(f64),
        t => candle_core::bail!("plane mean: {t:?} is not f32 or f64"),
    }
}

/// The contiguous values of a CPU storage.
fn cpu_slice<'a, T: WithDType>(
    st: &'a candle_core::Storage,
    l: &candle_core::Layout,
) -> Result<&'a [T]> {
    match (st, l.contiguous_offsets()) {
        (candle_core::Storage::Cpu(cpu), Some((a, b))) => Ok(&cpu.as_slice::<T>()?[a..b]),
        _ => candle_core::bail!("not a contiguous CPU tensor"),
    }
}

fn affine<T: WithDType>(
    x: &[T],
    (c, plane): (usize, usize),
    s: Option<&[T]>,
    b: Option<&[T]>,
) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    if plane == 0 || c == 0 {
        return y;
    }
    // planes in groups of at least 4096 values, one task each
    let per = 4096usize.div_ceil(plane).max(1);
    y.par_chunks_mut(per * plane)
        .zip(x.par_chunks(per * plane))
        .enumerate()
        .for_each(|(t, (yc, xc))| {
            for (k, (yp, xp)) in yc
                .chunks_exact_mut(plane)
                .zip(xc.chunks_exact(plane))
                .enumerate()
            {
                let ch = (t * per + k) % c;
                let (sc, bc) = (
                    s.map_or(T::one(), |s| s[ch]),
                    b.map_or(T::zero(), |b| b[ch]),
                );
                for (o, &v) in yp.iter_mut().zip(xp) {
                    *o = v * sc + bc;
                }
            }
        });
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against candle's broadcast ops, with each part alone and both.
    #[test]
    fn matches_broadcast_ops() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (3, 5, 7, 9), &dev).unwrap();
        let s = Tensor::randn(0f32, 1., 5, &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 5, &dev).unwrap();
        let pc = |v: &Tensor| v.reshape((1, 5, 1, 1)).unwrap();
        for (sv, bv) in [(Some(&s), None), (None, Some(&b)), (Some(&s), Some(&b))] {
            let mut want = x.clone();
            if let Some(sv) = sv {
                want = want.broadcast_mul(&pc(sv)).unwrap();
            }
            if let Some(bv) = bv {
                want = want.broadcast_add(&pc(bv)).unwrap();
            }
            let got = channel_affine(&x, sv, bv).unwrap();
            let mean = |t: &Tensor| t.mean((2, 3)).unwrap();
            let d = (plane_mean(&x, None).unwrap() - mean(&x))
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-6, "mean {d}");
            let xy = (&x * &want).unwrap();
            let d = (plane_mean(&x, Some(&want)).unwrap() - mean(&xy))
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-5, "mean of product {d}");
            let d: f32 = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-6, "{d}");
        }
    }
}
