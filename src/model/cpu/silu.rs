//! SiLU, `x * sigmoid(x)` (EfficientNet's activation), as a candle custom
//! op with its backward (`s (1 + x (1 - s))`), on every core and, for
//! float32, with GELU's branch-free `exp` compiled for AVX2 + FMA: candle's
//! own SiLU calls libm's `expf` one value at a time.

use super::gelu::{exp32, map, map2, par_map_f32};
use super::storage::values;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// SiLU of `x` (f32 or f64, on the CPU); differentiable.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Silu)
}

/// The gradient w.r.t. `x` of [`silu`]`(x)` given the gradient `g` at its
/// output.
pub fn silu_grad(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&g.contiguous()?, &SiluGrad)
}

/// `sigmoid(v)` and `1 - sigmoid(v)` from `exp(-|v|)`, which never
/// overflows; neither is a difference of nearly equal numbers.
#[inline(always)]
fn sigmoid32(v: f32) -> (f32, f32) {
    let e = exp32(-v.abs());
    let (a, b) = if v >= 0.0 { (1.0, e) } else { (e, 1.0) };
    let inv = 1.0 / (1.0 + e);
    (a * inv, b * inv)
}

fn sigmoid64(v: f64) -> f64 {
    let e = (-v.abs()).exp();
    (if v >= 0.0 { 1.0 } else { e }) / (1.0 + e)
}

#[inline(always)]
fn silu32(v: f32, _: f32) -> f32 {
    v * sigmoid32(v).0
}

#[inline(always)]
fn silu_grad32(v: f32, d: f32) -> f32 {
    let (s, one_minus_s) = sigmoid32(v);
    d * s * (1.0 + v * one_minus_s)
}

struct Silu;

impl CustomOp1 for Silu {
    fn name(&self) -> &'static str {
        "semcon-silu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => {
                CpuStorage::F32(par_map_f32(values::<f32>(s, l, "silu")?, None, silu32))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(map(values::<f64>(s, l, "silu")?, |v| v * sigmoid64(v)))
            }
            _ => candle_core::bail!("silu: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(silu_grad(x, g)?))
    }
}

/// (x, dy) -> dy * s (1 + x (1 - s)), s = sigmoid(x).
struct SiluGrad;

impl candle_core::CustomOp2 for SiluGrad {
    fn name(&self) -> &'static str {
        "semcon-silu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("silu grad: {:?} vs {:?}", l1.dims(), l2.dims())
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(par_map_f32(
                values::<f32>(s1, l1, "silu")?,
                Some(values::<f32>(s2, l2, "silu")?),
                silu_grad32,
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(map2(
                values::<f64>(s1, l1, "silu")?,
                values::<f64>(s2, l2, "silu")?,
                |v, d| {
                    let s = sigmoid64(v);
                    d * s * (1.0 + v * (1.0 - s))
                },
            )),
            _ => candle_core::bail!("silu grad: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Float32 SiLU and its derivative against float64 over [-100, 100] and
    /// the extremes.
    #[test]
    fn float32_silu_is_within_a_few_ulp_of_float64() {
        let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-4).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4, f32::MAX, f32::MIN]);
        let ys = par_map_f32(&xs, None, silu32);
        let ones = vec![1f32; xs.len()];
        let gs = par_map_f32(&xs, Some(&ones), silu_grad32);
        for ((&x, &y), &g) in xs.iter().zip(&ys).zip(&gs) {
            let xd = x as f64;
            let s = sigmoid64(xd);
            let (want, dwant) = (xd * s, s * (1.0 + xd * (1.0 - s)));
            assert!(
                (y as f64 - want).abs() <= 4e-7 * want.abs().max(1.0),
                "silu({x}) = {y}, not {want}"
            );
            assert!(
                (g as f64 - dwant).abs() <= 4e-7 * dwant.abs().max(1.0),
                "silu'({x}) = {g}, not {dwant}"
            );
        }
        assert!(par_map_f32(&[f32::NAN], None, silu32)[0].is_nan());
    }
}
