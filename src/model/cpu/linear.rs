//! A linear layer `x W^T + b` over the last dimension on the CPU as one op
//! (a ViT's projections and MLP, every classifier head): each thread takes
//! a block of rows, writes the bias into its block of the output and lets
//! one sequential gemm add `x W^T` onto it, so there is no zeroed buffer,
//! no second pass for the bias and no synchronisation inside the gemm. Its
//! input gradient `g W` is the same gemm ([`linear_grad_input`]).

use super::im2col::gemm;
use super::storage::values;
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType,
};
use gemm::Parallelism;
use rayon::prelude::*;

/// `x W^T + b` over the last dimension of `x` (any rank); `w` is `[out,
/// in]`, `b` `[out]`. Differentiable (candle's autograd) w.r.t. all three.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        Linear { transposed: false },
    )
}

/// The gradient w.r.t. `x` of [`linear`] given the gradient `g` at its
/// output: `g W`, over the last dimension.
pub fn linear_grad_input(g: &Tensor, w: &Tensor) -> Result<Tensor> {
    let zero = Tensor::zeros(w.dim(1)?, w.dtype(), w.device())?;
    g.contiguous()?
        .apply_op3_no_bwd(&w.contiguous()?, &zero, &Linear { transposed: true })
}

/// `x W^T + b`; `transposed`: the weight given is `W^T`, `[in, out]` (the
/// input gradient's `g W`, read in place).
struct Linear {
    transposed: bool,
}

/// Rows per thread: the rows split evenly over the pool, 64 at least.
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(64)
}

/// `x` `[rows, i]`, the weight read with `w_strides` as the `[i, o]`
/// right-hand side, bias `[o]`.
fn forward<T: WithDType>(
    x: &[T],
    (w, w_strides): (&[T], (usize, usize)),
    b: &[T],
    (i, o): (usize, usize),
) -> Vec<T> {
    let rows = x.len() / i.max(1);
    let mut y: Vec<T> = Vec::with_capacity(rows * o);
    // SAFETY: every element is written (the bias) before anything reads it.
    #[allow(clippy::uninit_vec)]
    unsafe {
        y.set_len(rows * o)
    };
    let per = rows_per_task(rows);
    y.par_chunks_mut(per * o.max(1))
        .enumerate()
        .for_each(|(t, dst)| {
            let r = dst.len() / o.max(1);
            for row in dst.chunks_exact_mut(o.max(1)) {
                row.copy_from_slice(b);
            }
            if i > 0 {
                gemm(
                    (r, o, i),
                    dst,
                    (o, 1),
                    true,
                    &x[t * per * i..][..r * i],
                    (i, 1),
                    w,
                    w_strides,
                    Parallelism::None,
                );
            }
        });
    y
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "semcon-linear"
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
        let (&[w0, w1], dims) = (l2.dims(), l1.dims()) else {
            candle_core::bail!("linear: weight of shape {:?}", l2.dims())
        };
        // the right-hand side [i, o] as strides into the weight
        let (i, o, strides) = if self.transposed {
            (w0, w1, (w1, 1))
        } else {
            (w1, w0, (1, w1))
        };
        if dims.last() != Some(&i) || l3.dims() != [o] {
            candle_core::bail!(
                "linear: input {dims:?}, weight {:?} and bias {:?} do not fit",
                l2.dims(),
                l3.dims()
            )
        }
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                values(s1, l1, "linear")?,
                (values(s2, l2, "linear")?, strides),
                values(s3, l3, "linear")?,
                (i, o),
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                values(s1, l1, "linear")?,
                (values(s2, l2, "linear")?, strides),
                values(s3, l3, "linear")?,
                (i, o),
            )),
            s => candle_core::bail!("linear: unsupported dtype {:?}", s.dtype()),
        };
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("rank >= 1") = o;
        Ok((out, shape.into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(linear_grad_input(g, w)?)
        } else {
            None
        };
        let (o, i) = w.dims2()?;
        let g2 = g.reshape(((), o))?;
        let dw = if w.track_op() {
            Some(g2.t()?.matmul(&x.reshape(((), i))?)?)
        } else {
            None
        };
        let db = if b.track_op() { Some(g2.sum(0)?) } else { None };
        Ok((dx, dw, db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward and every gradient against candle's matmul, over more rows
    /// than one task takes and a rank-3 input.
    #[test]
    fn matches_candle_matmul() {
        let dev = Device::Cpu;
        let ramp = |n: usize, s: f32| {
            (0..n)
                .map(|k| ((k * 7919) % 101) as f32 / 50.0 * s - s)
                .collect::<Vec<f32>>()
        };
        let (n, s, i, o) = (3, 70, 9, 5);
        let x = Var::from_vec(ramp(n * s * i, 1.0), (n, s, i), &dev).unwrap();
        let w = Var::from_vec(ramp(o * i, 0.5), (o, i), &dev).unwrap();
        let b = Var::from_vec(ramp(o, 2.0), o, &dev).unwrap();
        let g = Tensor::from_vec(ramp(n * s * o, 1.5), (n, s, o), &dev).unwrap();
        let ours = linear(&x, &w, &b).unwrap();
        let theirs = x
            .reshape((n * s, i))
            .unwrap()
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            .reshape((n, s, o))
            .unwrap();
        let close = |a: &Tensor, b: &Tensor, what: &str| {
            let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a.len(), b.len(), "{what}");
            for (k, (u, v)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (u - v).abs() <= 1e-5 * v.abs().max(1.0),
                    "{what} {k}: {u} vs {v}"
                );
            }
        };
        close(&ours, &theirs, "forward");
        let ga = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&theirs * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, what) in [(&x, "dx"), (&w, "dw"), (&b, "db")] {
            close(
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
                what,
            );
        }
        close(
            &linear_grad_input(&g, &w).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
            "grad input",
        );
    }
}
