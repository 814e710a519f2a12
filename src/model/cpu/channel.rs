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
