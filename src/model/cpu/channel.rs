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
    per_plane(x, &dims[1..2], s, b)
}

/// `x * s + b` per plane of `x` `[N, C, ...]`; `s`, `b` `[N, C]` (a
/// squeeze-and-excitation gate, a gradient's per-plane part). Not
/// differentiable.
pub fn plane_affine(x: &Tensor, s: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        candle_core::bail!("plane affine: {dims:?} has no planes")
    }
    per_plane(x, &dims[..2], s, b)
}

/// `x + y`, same shapes, on every core (candle's add runs on its own pool,
/// beside rayon's). Not differentiable.
pub fn add(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    if x.dims() != y.dims() || x.dtype() != y.dtype() {
        candle_core::bail!(
            "add: {:?} ({:?}) and {:?} ({:?})",
            x.dims(),
            x.dtype(),
            y.dims(),
            y.dtype()
        )
    }
    let (x, y) = (x.contiguous()?, y.contiguous()?);
    macro_rules! run {
        ($t:ty) => {{
            let out = {
                let ((xs, xr), (ys, yr)) = (contiguous(&x)?, contiguous(&y)?);
                let (a, b) = (values::<$t>(&xs, xr)?, values::<$t>(&ys, yr)?);
                let mut out: Vec<$t> = Vec::with_capacity(a.len());
                out.spare_capacity_mut()[..a.len()]
                    .par_chunks_mut(CHUNK)
                    .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                    .for_each(|(o, (a, b))| {
                        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                            o.write(a + b);
                        }
                    });
                // SAFETY: every chunk wrote each of its values.
                unsafe { out.set_len(a.len()) };
                out
            };
            Tensor::from_vec(out, x.dims(), x.device())
        }};
    }
    match x.dtype() {
        candle_core::DType::F32 => run!(f32),
        candle_core::DType::F64 => run!(f64),
        t => candle_core::bail!("add: {t:?} is not f32 or f64"),
    }
}

/// Values per task of the elementwise ops.
const CHUNK: usize = 1 << 14;

/// A contiguous CPU tensor's storage (read-locked) and its range.
fn contiguous(
    t: &Tensor,
) -> Result<(
    impl std::ops::Deref<Target = candle_core::Storage> + '_,
    (usize, usize),
)> {
    let (guard, l) = t.storage_and_layout();
    let Some(range) = l.contiguous_offsets() else {
        candle_core::bail!("not a contiguous tensor")
    };
    Ok((guard, range))
}

/// The values of a [`contiguous`] storage.
fn values<T: WithDType>(st: &candle_core::Storage, (a, b): (usize, usize)) -> Result<&[T]> {
    match st {
        candle_core::Storage::Cpu(cpu) => Ok(&cpu.as_slice::<T>()?[a..b]),
        _ => candle_core::bail!("not a CPU tensor"),
    }
}

/// `x * s + b` with one (s, b) pair per group of the leading dimensions
/// `lead` of `x` (`[C]`: per channel; `[N, C]`: per plane).
fn per_plane(x: &Tensor, lead: &[usize], s: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k: usize = lead.iter().product();
    for v in [s, b].into_iter().flatten() {
        if v.elem_count() != k {
            candle_core::bail!("affine: {:?} for {lead:?} of {dims:?}", v.dims())
        }
    }
    let plane: usize = dims[2..].iter().product();
    let x = x.contiguous()?;
    macro_rules! run {
        ($t:ty) => {{
            let y = {
                let (xs, xr) = contiguous(&x)?;
                let sv = s
                    .map(|t| t.to_dtype(x.dtype())?.flatten_all()?.to_vec1::<$t>())
                    .transpose()?;
                let bv = b
                    .map(|t| t.to_dtype(x.dtype())?.flatten_all()?.to_vec1::<$t>())
                    .transpose()?;
                affine(
                    values::<$t>(&xs, xr)?,
                    (k, plane),
                    sv.as_deref(),
                    bv.as_deref(),
                )
            };
            Tensor::from_vec(y, dims.as_slice(), x.device())
        }};
    }
    match x.dtype() {
        candle_core::DType::F32 => run!(f32),
        candle_core::DType::F64 => run!(f64),
        t => candle_core::bail!("affine: {t:?} is not f32 or f64"),
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

/// `x` as planes of `plane` values, plane `p` mapped by `(s, b)[p % k]`.
fn affine<T: WithDType>(
    x: &[T],
    (k, plane): (usize, usize),
    s: Option<&[T]>,
    b: Option<&[T]>,
) -> Vec<T> {
    let mut y: Vec<T> = Vec::with_capacity(x.len());
    if plane == 0 || k == 0 {
        return y;
    }
    // planes in groups of at least 4096 values, one task each
    let per = 4096usize.div_ceil(plane).max(1);
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(per * plane)
        .zip(x.par_chunks(per * plane))
        .enumerate()
        .for_each(|(t, (yc, xc))| {
            for (j, (yp, xp)) in yc
                .chunks_exact_mut(plane)
                .zip(xc.chunks_exact(plane))
                .enumerate()
            {
                let i = (t * per + j) % k;
                let (sc, bc) = (s.map_or(T::one(), |s| s[i]), b.map_or(T::zero(), |b| b[i]));
                for (o, &v) in yp.iter_mut().zip(xp) {
                    o.write(v * sc + bc);
                }
            }
        });
    // SAFETY: x's length is a multiple of `plane` (whole planes), and every
    // plane was written.
    unsafe { y.set_len(x.len()) };
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn maxd(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
            .unwrap()
    }

    /// Against candle's broadcast ops, with each part alone and both: per
    /// channel, per plane, the means of planes; and the add.
    #[test]
    fn matches_broadcast_ops() {
        let dev = Device::Cpu;
        // 3 x 5 planes of 63 values; the add: 945 values, then 40,000 (more
        // than one task, the last one partial)
        let x = Tensor::randn(0f32, 1., (3, 5, 7, 9), &dev).unwrap();
        let s = Tensor::randn(0f32, 1., 5, &dev).unwrap();
        let b = Tensor::randn(0f32, 1., 5, &dev).unwrap();
        let sp = Tensor::randn(0f32, 1., (3, 5), &dev).unwrap();
        let bp = Tensor::randn(0f32, 1., (3, 5), &dev).unwrap();
        let pc = |v: &Tensor| v.reshape((1, 5, 1, 1)).unwrap();
        let pp = |v: &Tensor| v.reshape((3, 5, 1, 1)).unwrap();
        for (i, j) in [(true, false), (false, true), (true, true)] {
            let (sv, bv) = (i.then_some(&s), j.then_some(&b));
            let mut want = x.clone();
            if let Some(sv) = sv {
                want = want.broadcast_mul(&pc(sv)).unwrap();
            }
            if let Some(bv) = bv {
                want = want.broadcast_add(&pc(bv)).unwrap();
            }
            let d = maxd(&channel_affine(&x, sv, bv).unwrap(), &want);
            assert!(d < 1e-6, "per channel {d}");
            let (sv, bv) = (i.then_some(&sp), j.then_some(&bp));
            let mut want = x.clone();
            if let Some(sv) = sv {
                want = want.broadcast_mul(&pp(sv)).unwrap();
            }
            if let Some(bv) = bv {
                want = want.broadcast_add(&pp(bv)).unwrap();
            }
            let d = maxd(&plane_affine(&x, sv, bv).unwrap(), &want);
            assert!(d < 1e-6, "per plane {d}");
            let mean = |t: &Tensor| t.mean((2, 3)).unwrap();
            let d = maxd(&plane_mean(&x, None).unwrap(), &mean(&x));
            assert!(d < 1e-6, "mean {d}");
            let xy = (&x * &want).unwrap();
            let d = maxd(&plane_mean(&x, Some(&want)).unwrap(), &mean(&xy));
            assert!(d < 1e-5, "mean of product {d}");
        }
        for shape in [(3, 5, 7, 9), (2, 4, 50, 100)] {
            let (a, c) = (
                Tensor::randn(0f32, 1., shape, &dev).unwrap(),
                Tensor::randn(0f32, 1., shape, &dev).unwrap(),
            );
            assert_eq!(maxd(&add(&a, &c).unwrap(), &(&a + &c).unwrap()), 0.0);
        }
        // wrong shapes are errors, not panics
        assert!(plane_affine(&x, Some(&s), None).is_err());
        assert!(channel_affine(&x, Some(&sp), None).is_err());
        assert!(add(&x, &s).is_err());
    }
}
