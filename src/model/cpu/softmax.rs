//! Softmax over the last dimension as one candle custom op on every core,
//! with its backward (`y * (g - sum(g * y))` per row): attention applies it
//! to N x heads x tokens rows of tokens values, and candle's composed
//! softmax makes five passes over them, its `exp` on one thread.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Softmax of `x` over its last dimension (f32 or f64, on the CPU).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

fn rows<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [T], usize)> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("softmax: non-contiguous argument")
    };
    let n = *l.dims().last().unwrap_or(&1);
    if n == 0 {
        candle_core::bail!("softmax over an empty dimension")
    }
    Ok((&s.as_slice::<T>()?[a..b], n))
}

/// What the forward pass needs of f32 and f64.
trait Real: WithDType {
    const NEG_INF: Self;
    fn exp_(self) -> Self;
    fn max_(self, o: Self) -> Self;
}

impl Real for f32 {
    const NEG_INF: Self = f32::NEG_INFINITY;
    fn exp_(self) -> Self {
        self.exp()
    }
    fn max_(self, o: Self) -> Self {
        self.max(o)
    }
}

impl Real for f64 {
    const NEG_INF: Self = f64::NEG_INFINITY;
    fn exp_(self) -> Self {
        self.exp()
    }
    fn max_(self, o: Self) -> Self {
        self.max(o)
    }
}

fn forward<T: Real>(x: &[T], n: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(|(o, r)| {
        let m = r.iter().fold(T::NEG_INF, |a, &v| a.max_(v));
        let mut sum = T::zero();
        for (o, &v) in o.iter_mut().zip(r) {
            *o = (v - m).exp_();
            sum += *o;
        }
        let inv = T::one() / sum;
        o.iter_mut().for_each(|v| *v *= inv);
    });
    y
}

fn backward<T: WithDType>(y: &[T], g: &[T], n: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    dx.par_chunks_mut(n)
        .zip(y.par_chunks(n).zip(g.par_chunks(n)))
        .for_each(|(d, (y, g))| {
            let dot = y.iter().zip(g).fold(T::zero(), |a, (&p, &q)| a + p * q);
            for ((d, &p), &q) in d.iter_mut().zip(y).zip(g) {
                *d = p * (q - dot);
            }
        });
    dx
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "semcon-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => {
                let (x, n) = rows::<f32>(s, l)?;
                CpuStorage::F32(forward(x, n))
            }
            CpuStorage::F64(_) => {
                let (x, n) = rows::<f64>(s, l)?;
                CpuStorage::F64(forward(x, n))
            }
            _ => candle_core::bail!("softmax: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            y.contiguous()?
                .apply_op2_no_bwd(&g.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// (y, dy) -> dx.
struct SoftmaxGrad;

impl candle_core::CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "semcon-softmax-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("softmax grad: {:?} vs {:?}", l1.dims(), l2.dims())
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let ((y, n), (g, _)) = (rows::<f32>(s1, l1)?, rows::<f32>(s2, l2)?);
                CpuStorage::F32(backward(y, g, n))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let ((y, n), (g, _)) = (rows::<f64>(s1, l1)?, rows::<f64>(s2, l2)?);
                CpuStorage::F64(backward(y, g, n))
            }
            _ => candle_core::bail!("softmax grad: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// Against candle's composed softmax and its autograd, in f64.
    #[test]
    fn matches_candle_softmax() {
        let x = Var::from_tensor(
            &(Tensor::randn(0f64, 1., (2, 3, 7, 9), &Device::Cpu).unwrap() * 4.0).unwrap(),
        )
        .unwrap();
        let a = softmax_last_dim(x.as_tensor()).unwrap();
        let b = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        let d = crate::model::cpu::testing::max_diff;
        assert!(d(&a, &b) < 1e-14);
        let r = Tensor::randn(0f64, 1., a.dims(), &Device::Cpu).unwrap();
        let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(d(ga.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-12);
    }
}
