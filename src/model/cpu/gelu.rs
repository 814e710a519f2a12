//! torch's exact GELU, `x * Phi(x)` with `Phi(x) = (1 + erf(x / sqrt 2)) / 2`,
//! as a candle custom op with its backward (`Phi(x) + x * phi(x)`), run on
//! every core: candle's `gelu_erf` runs on one thread, and a ConvNeXt or ViT
//! applies it to four times its width at every block.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// GELU of `x` (f32 or f64, on the CPU).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

fn phi_cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

fn phi_cdf32(x: f32) -> f32 {
    0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn map<T: Copy + Send + Sync + Default>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut y = vec![T::default(); x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)));
    y
}

fn map2<T: Copy + Send + Sync + Default>(x: &[T], g: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
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

fn contiguous<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("gelu: non-contiguous argument"),
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "semcon-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => {
                CpuStorage::F32(map(contiguous::<f32>(s, l)?, |v| v * phi_cdf32(v)))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(map(contiguous::<f64>(s, l)?, |v| v * phi_cdf(v)))
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
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(map2(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                |v, d| d * (phi_cdf32(v) + v * (-0.5 * v * v).exp() * INV_SQRT_2PI as f32),
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(map2(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
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
        let d = |p: &Tensor, q: &Tensor| {
            (p - q)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
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
