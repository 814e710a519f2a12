//! torch's exact GELU, `x * Phi(x)` with `Phi(x) = (1 + erf(x / sqrt 2)) / 2`,
//! as a candle custom op with its backward (`Phi(x) + x * phi(x)`), run on
//! every core: candle's `gelu_erf` runs on one thread, and a ConvNeXt or ViT
//! applies it to four times its width at every block.

use super::simd::widest;
use super::storage::values;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

pub(super) const CHUNK: usize = 4096;

/// GELU of `x` (f32 or f64, on the CPU).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

fn phi_cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// `exp(x)` for `x <= 0` (all GELU needs) in float32 without branches, so that a loop of it vectorises:
/// Cephes' `expf` (range reduction by ln 2 in two parts, a degree-6
/// polynomial, the exponent set by bits), within 2 ulp; 0 below the
/// smallest normal float.
#[inline(always)]
pub(super) fn exp32(x: f32) -> f32 {
    // Below e^-87.3 (the smallest normal float) the result is 0.
    let under = x < -87.3;
    let x = x.clamp(-87.3, 0.0);
    // max/min also take a NaN to -127 (clamp would keep it), so the
    // conversion below is defined
    #[allow(clippy::manual_clamp)]
    let n = (x * std::f32::consts::LOG2_E + 0.5)
        .floor()
        .max(-127.0)
        .min(0.0);
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut y = 1.987_569_1e-4;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 0.166_666_65;
    y = y * r + 0.5;
    y = y * r * r + r + 1.0;
    // SAFETY: n is an integer in [-127, 0]. (`as i32` would saturate and
    // map NaN to 0 value by value: no vector conversion.)
    let k = unsafe { n.to_int_unchecked::<i32>() };
    let e = y * f32::from_bits(((k + 127) << 23) as u32);
    if under {
        0.0
    } else {
        e
    }
}

/// `erf(x)` in float32 without branches: Abramowitz and Stegun 7.1.26
/// (absolute error below 1.5e-7), the form PyTorch's vectorised CPU `erf`
/// uses for GELU.
#[inline(always)]
fn erf32(x: f32) -> f32 {
    erf32_given(x, exp32(-x * x))
}

/// [`erf32`] given `e` = `exp(-x^2)` (computed once where a caller needs it
/// too).
#[inline(always)]
fn erf32_given(x: f32, e: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let r =
        (((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6;
    (1.0 - r * t * e).copysign(x)
}

#[inline(always)]
fn phi_cdf32(x: f32) -> f32 {
    0.5 * (1.0 + erf32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// torch's exact GELU of one float32 (vectorises inside a loop).
#[inline(always)]
pub(crate) fn gelu32(v: f32) -> f32 {
    v * phi_cdf32(v)
}

/// `d` times torch's GELU derivative at `v`, float32 (vectorises inside a
/// loop).
#[inline(always)]
pub(crate) fn gelu_grad32(v: f32, d: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    // erf(v / sqrt 2) and the density phi(v) share exp(-v^2 / 2): one exp
    let e = exp32(-0.5 * v * v);
    let cdf = 0.5 * (1.0 + erf32_given(v * std::f32::consts::FRAC_1_SQRT_2, e));
    d * (cdf + v * e * INV_SQRT_2PI)
}

/// GELU of float32 values, on every core.
fn gelu_f32(x: &[f32]) -> Vec<f32> {
    par_map_f32(x, None, |v, _| gelu32(v))
}

/// [`gelu_f32`]'s backward: `dy * GELU'(x)`.
fn gelu_grad_f32(x: &[f32], g: &[f32]) -> Vec<f32> {
    par_map_f32(x, Some(g), gelu_grad32)
}

/// `f(x, g)` (`f(x, 1)` without `g`) over float32 slices on every core,
/// each chunk compiled for the widest vector instructions the CPU has (`f`
/// is inlined into each, so the loop vectorises: eight or sixteen values at
/// a time). The output is written once, never zero-filled.
pub(super) fn par_map_f32<F: Fn(f32, f32) -> f32 + Copy + Sync>(
    x: &[f32],
    g: Option<&[f32]>,
    f: F,
) -> Vec<f32> {
    if let Some(g) = g {
        assert_eq!(g.len(), x.len(), "par_map_f32: x and g differ in length");
    }
    let mut y: Vec<f32> = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, o)| {
            let i = &x[c * CHUNK..][..o.len()];
            let d = g.map(|g| &g[c * CHUNK..][..o.len()]);
            map_chunk_widest(o, i, d, f)
        });
    // SAFETY: every chunk wrote each of its values.
    unsafe { y.set_len(x.len()) };
    y
}

/// One chunk of [`par_map_f32`]: `o = f(i, d)`, every value written.
#[inline(always)]
fn map_chunk<F: Fn(f32, f32) -> f32>(
    o: &mut [MaybeUninit<f32>],
    i: &[f32],
    d: Option<&[f32]>,
    f: F,
) {
    match d {
        Some(d) => {
            for ((o, &v), &dv) in o.iter_mut().zip(i).zip(d) {
                o.write(f(v, dv));
            }
        }
        None => o.iter_mut().zip(i).for_each(|(o, &v)| {
            o.write(f(v, 1.0));
        }),
    }
}

widest! {
    fn map_chunk_widest[F: Fn(f32, f32) -> f32](
        o: &mut [MaybeUninit<f32>],
        i: &[f32],
        d: Option<&[f32]>,
        f: F,
    ) => map_chunk
}

pub(super) fn map<T: Copy + Send + Sync + Default>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut y = vec![T::default(); x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)));
    y
}

pub(super) fn map2<T: Copy + Send + Sync + Default>(
    x: &[T],
    g: &[T],
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    let mut y = vec![T::default(); x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(o, (i, d))| {
            for ((o, &v), &dv) in o.iter_mut().zip(i).zip(d) {
                *o = f(v, dv)
            }
        });
    y
}

/// The gradient w.r.t. `x` of [`gelu`]`(x)` given the gradient `g` at its
/// output.
pub fn gelu_grad(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&g.contiguous()?, &GeluGrad)
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "semcon-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => CpuStorage::F32(gelu_f32(values::<f32>(s, l, "gelu")?)),
            CpuStorage::F64(_) => {
                CpuStorage::F64(map(values::<f64>(s, l, "gelu")?, |v| v * phi_cdf(v)))
            }
            _ => candle_core::bail!("gelu: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluGrad)?))
    }
}

/// (x, dy) -> dy * (Phi(x) + x * phi(x)).
struct GeluGrad;

impl candle_core::CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "semcon-gelu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("gelu grad: {:?} vs {:?}", l1.dims(), l2.dims())
        }
        const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(gelu_grad_f32(
                values::<f32>(s1, l1, "gelu")?,
                values::<f32>(s2, l2, "gelu")?,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(map2(
                values::<f64>(s1, l1, "gelu")?,
                values::<f64>(s2, l2, "gelu")?,
                |v, d| d * (phi_cdf(v) + v * (-0.5 * v * v).exp() * INV_SQRT_2PI),
            )),
            _ => candle_core::bail!("gelu grad: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The float32 GELU and its derivative against float64 libm, over
    /// [-12, 12] and the extremes; exp of [-87, 0] against libm.
    #[test]
    fn float32_gelu_is_within_a_few_ulp_of_float64() {
        let mut xs: Vec<f32> = (-240_000..=240_000).map(|i| i as f32 * 5e-5).collect();
        xs.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            50.0,
            -50.0,
            1e4,
            -1e4,
            f32::MAX,
            f32::MIN,
        ]);
        let ys = gelu_f32(&xs);
        let gs = gelu_grad_f32(&xs, &vec![1.0; xs.len()]);
        for ((&x, &y), &g) in xs.iter().zip(&ys).zip(&gs) {
            let xd = x as f64;
            let want = xd * phi_cdf(xd);
            assert!(
                (y as f64 - want).abs() <= 4e-7 * want.abs().max(1.0),
                "gelu({x}) = {y}, not {want}"
            );
            let dwant = phi_cdf(xd) + xd * (-0.5 * xd * xd).exp() * 0.398_942_280_401_432_7;
            assert!(
                (g as f64 - dwant).abs() <= 4e-7 * dwant.abs().max(1.0),
                "gelu'({x}) = {g}, not {dwant}"
            );
        }
        for i in -870..=0 {
            let x = i as f32 * 0.1;
            let (e, want) = (exp32(x) as f64, (x as f64).exp());
            assert!(
                (e - want).abs() <= 3e-7 * want,
                "exp({x}) = {e}, not {want}"
            );
        }
        assert!(gelu_f32(&[f32::NAN])[0].is_nan());
        assert_eq!(gelu_f32(&[f32::INFINITY])[0], f32::INFINITY);
    }

    /// Against candle's `gelu_erf`, and the derivative against a central
    /// difference, in f64.
    #[test]
    fn matches_candle_gelu_erf() {
        let x = Var::from_tensor(
            &(Tensor::randn(0f64, 1., (3, 1000), &Device::Cpu).unwrap() * 3.0).unwrap(),
        )
        .unwrap();
        let a = gelu(x.as_tensor()).unwrap();
        let b = x.as_tensor().gelu_erf().unwrap();
        let d = crate::model::cpu::testing::max_diff;
        assert!(d(&a, &b) < 1e-12);
        // the derivative against a central difference (candle's own backward
        // rounds 1/sqrt(2 pi) to 0.398942: within 1e-6 of it only)
        let ga = a.sum_all().unwrap().backward().unwrap();
        let h = 1e-5;
        let fd = ((gelu(&(x.as_tensor() + h).unwrap()).unwrap()
            - gelu(&(x.as_tensor() - h).unwrap()).unwrap())
        .unwrap()
            / (2.0 * h))
            .unwrap();
        assert!(d(ga.get(&x).unwrap(), &fd) < 1e-8);
        let gb = b.sum_all().unwrap().backward().unwrap();
        assert!(d(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-6);
    }
}
