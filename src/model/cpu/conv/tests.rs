//! Unit tests of the CPU convolution ([`super`]) against candle's own
//! convolution and a naive reference, values and gradients.

use super::*;
use crate::model::cpu::testing::max_diff;
use candle_core::{Device, Var};

/// Deterministic values in [-1, 1).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(data(n, seed), shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn max_abs(a: &Tensor) -> f64 {
    let d = a.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Direct-loop convolution and its gradients for dy = r, in f64: (y, dx, dw).
fn naive(x: &Tensor, w: &Tensor, r: &Tensor, s: usize, p: usize) -> (Tensor, Tensor, Tensor) {
    let g = Geom::new(x.dims(), w.dims(), s, p).unwrap();
    let (xv, wv, rv) = (values(x), values(w), values(r));
    let (mut y, mut dx, mut dw) = (
        vec![0f64; rv.len()],
        vec![0f64; xv.len()],
        vec![0f64; wv.len()],
    );
    for b in 0..g.b {
        for o in 0..g.o {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let yi = ((b * g.o + o) * g.oh + oy) * g.ow + ox;
                    for c in 0..g.c {
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let (iy, ix) = (
                                    (oy * s + ki) as isize - p as isize,
                                    (ox * s + kj) as isize - p as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((b * g.c + c) * g.h + iy as usize) * g.w + ix as usize;
                                let wi = ((o * g.c + c) * g.kh + ki) * g.kw + kj;
                                y[yi] += xv[xi] * wv[wi];
                                dx[xi] += rv[yi] * wv[wi];
                                dw[wi] += rv[yi] * xv[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    let t = |v: Vec<f64>, shape: Shape| Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
    (t(y, g.y_shape()), t(dx, g.x_shape()), t(dw, g.w_shape()))
}

/// Forward and both gradients of `cpu_conv2d` against a direct-loop f64
/// reference and against candle's conv2d (its backward, where candle gets it right).
#[allow(clippy::too_many_arguments)]
fn check(
    b: usize,
    c: usize,
    o: usize,
    (h, w): (usize, usize),
    k: usize,
    s: usize,
    p: usize,
    dtype: DType,
) {
    let what = format!("b{b} c{c} o{o} {h}x{w} k{k} s{s} p{p} {dtype:?}");
    let x = tensor(&[b, c, h, w], 1 + (b * 31 + c * 7 + h) as u64, dtype);
    let wt = tensor(&[o, c, k, k], 2 + (o * 13 + k) as u64, dtype);
    let tol = if dtype == DType::F64 { 1e-12 } else { 2e-6 };
    let close = |a: &Tensor, b: &Tensor, name: &str| {
        let (a, b) = (
            a.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        let d = max_diff(&a, &b);
        assert!(
            d <= tol * (1.0 + max_abs(&b)),
            "{name} {what}: max abs diff {d}"
        );
    };
    let y = cpu_conv2d(&x, &wt, s, p).unwrap();
    close(&y, &x.conv2d(&wt, p, s, 1, 1).unwrap(), "forward vs candle");

    // Gradients of sum(conv * r) for a fixed random r.
    let r = tensor(y.dims(), 3, dtype);
    let (y0, dx0, dw0) = naive(&x, &wt, &r, s, p);
    close(&y, &y0, "forward vs direct");
    let grads = |f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>| -> Result<(Tensor, Tensor)> {
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&wt)?);
        let g = (f(xv.as_tensor(), wv.as_tensor())? * &r)?
            .sum_all()?
            .backward()?;
        Ok((
            g.get(xv.as_tensor()).unwrap().clone(),
            g.get(wv.as_tensor()).unwrap().clone(),
        ))
    };
    let (dx, dw) = grads(&|x, w| cpu_conv2d(x, w, s, p)).unwrap();
    close(&dx, &dx0, "dx vs direct");
    close(&dw, &dw0, "dw vs direct");
    // candle's backward fails on some shapes (non-square inputs whose height and
    // width need different output paddings); compare where it works.
    if let Ok((dx1, dw1)) = grads(&|x, w| x.conv2d(w, p, s, 1, 1)) {
        close(&dx, &dx1, "dx vs candle");
        close(&dw, &dw1, "dw vs candle");
    }
}

fn grid(dtype: DType) {
    for k in [1, 3, 7] {
        for s in [1, 2] {
            for p in [0, 1, 3] {
                for size in [(7, 7), (8, 10), (9, 8)] {
                    for b in [1, 3] {
                        for (c, o) in [(1, 8), (3, 1), (8, 3), (3, 8), (8, 8)] {
                            check(b, c, o, size, k, s, p, dtype);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matches_candle_f32() {
    grid(DType::F32);
}

#[test]
fn matches_candle_f64() {
    grid(DType::F64);
}

/// One thread: chunks in turn, several images per gemm.
#[test]
fn matches_candle_single_thread() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0), (7, 2, 3)] {
            check(5, 3, 8, (9, 8), k, s, p, DType::F32);
        }
    });
}

/// Shapes of a cifar ResNet layer: many images per gemm, in parallel.
#[test]
fn matches_candle_resnet_shapes() {
    check(9, 16, 32, (4, 4), 3, 1, 1, DType::F32);
    check(9, 16, 32, (8, 8), 1, 2, 0, DType::F32);
    check(4, 8, 16, (16, 16), 3, 2, 1, DType::F32);
    check(2, 32, 16, (6, 6), 1, 1, 0, DType::F32);
}

#[test]
fn dispatch_non_contiguous_and_untracked() {
    // A transposed (non-contiguous) input goes through the same path.
    let x = tensor(&[2, 3, 9, 7], 5, DType::F32)
        .transpose(2, 3)
        .unwrap();
    let w = tensor(&[4, 3, 3, 3], 6, DType::F32);
    let y = conv2d(&x, &w, 2, 1).unwrap();
    assert!(max_diff(&y, &x.conv2d(&w, 1, 2, 1, 1).unwrap()) < 1e-5);
    // Only the weight is a variable: only its gradient exists.
    let wv = Var::from_tensor(&w).unwrap();
    let g = conv2d(&x, wv.as_tensor(), 1, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&x).is_none() && g.get(wv.as_tensor()).is_some());
}

#[test]
fn bad_shapes_are_errors() {
    let x = tensor(&[1, 3, 5, 5], 1, DType::F32);
    assert!(cpu_conv2d(&x, &tensor(&[4, 2, 3, 3], 2, DType::F32), 1, 1).is_err());
    assert!(cpu_conv2d(&x, &tensor(&[4, 3, 7, 7], 2, DType::F32), 1, 0).is_err());
    assert!(cpu_conv2d(&x, &tensor(&[4, 3, 3, 3], 2, DType::F64), 1, 0).is_err());
    assert!(cpu_conv2d(&x, &tensor(&[4, 3, 3, 3], 2, DType::F32), 0, 0).is_err());
}

/// The grouped op against one convolution per group through candle's
/// narrow and cat (differentiated by candle): forward and both gradients,
/// f64, with only the input or only the weight tracked too.
#[test]
fn grouped_op_matches_split_groups() {
    use super::split_groups;
    use crate::model::cpu::grouped::conv2d_grouped;
    use candle_core::Var;
    for (groups, c, o, k, s, p, hw) in [
        (4, 8, 12, 3, 1, 1, 7),
        (2, 6, 4, 1, 2, 0, 6),
        (3, 9, 9, 3, 2, 1, 5),
    ] {
        let x = Var::from_tensor(&tensor(&[2, c, hw, hw], 1, DType::F64)).unwrap();
        let w = Var::from_tensor(&tensor(&[o, c / groups, k, k], 2, DType::F64)).unwrap();
        let a = conv2d_grouped(x.as_tensor(), w.as_tensor(), s, p, groups).unwrap();
        let b = split_groups(x.as_tensor(), w.as_tensor(), s, p, groups).unwrap();
        assert!(max_diff(&a, &b) < 1e-12);
        let r = tensor(a.dims(), 3, DType::F64);
        let ga = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            assert!(max_diff(ga.get(v).unwrap(), gb.get(v).unwrap()) < 1e-10);
        }
        // only the input tracked (PGD on frozen weights)
        let a = conv2d_grouped(x.as_tensor(), &w.as_tensor().detach(), s, p, groups).unwrap();
        let g = (&a * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g.get(&x).unwrap(), gb.get(&x).unwrap()) < 1e-10);
    }
}

/// The ops that add a bias per filter inside the convolution (plain, with
/// one and several images per gemm, and depthwise with register blocks and
/// a remainder) against the convolution followed by candle's add, f32 and
/// f64; and refused when a gradient would be needed.
#[test]
fn bias_inside_the_op_matches_an_add_after() {
    use crate::model::cpu::grouped::{conv2d_grouped, conv2d_grouped_bias};
    // (groups, c, o, k, stride, pad, hw, batch): 56 px planes take one image
    // per gemm, 5 px planes several; 70 depthwise channels: two blocks + 6;
    // 3: the remainder only; last, a grouped (not depthwise) convolution.
    for (groups, c, o, k, s, p, hw, n) in [
        (1, 5, 7, 1, 1, 0, 56, 3),
        (1, 6, 4, 3, 2, 1, 5, 9),
        (1, 3, 8, 4, 4, 0, 12, 2),
        (70, 70, 70, 7, 1, 3, 9, 3),
        (3, 3, 3, 3, 2, 1, 8, 2),
        (2, 4, 6, 3, 1, 1, 6, 2),
    ] {
        for dtype in [DType::F32, DType::F64] {
            let x = tensor(&[n, c, hw, hw], 1, dtype);
            let w = tensor(&[o, c / groups, k, k], 2, dtype);
            let b = tensor(&[o], 3, dtype);
            let got = conv2d_grouped_bias(&x, &w, &b, s, p, groups).unwrap();
            let want = conv2d_grouped(&x, &w, s, p, groups)
                .unwrap()
                .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let e = max_diff(&got, &want);
            assert!(
                e <= tol * max_abs(&want).max(1.0),
                "{groups} {c} {k} {hw} {dtype:?}: {e}"
            );
            // tracked: the op with a backward (and an add) is used instead
            let xv = Var::from_tensor(&x).unwrap();
            let y = conv2d_grouped_bias(xv.as_tensor(), &w, &b, s, p, groups).unwrap();
            assert!(max_diff(&y, &want) <= tol * max_abs(&want).max(1.0));
            let g = y.sum_all().unwrap().backward().unwrap();
            assert!(g.get(&xv).is_some());
            // the one-pass ops themselves refuse a tracked argument
            let refused = if groups == 1 {
                super::cpu_conv2d_bias(xv.as_tensor(), &w, &b, s, p).is_err()
            } else if groups == c && o == c {
                crate::model::cpu::depthwise::depthwise_conv2d_bias(xv.as_tensor(), &w, &b, s, p)
                    .is_err()
            } else {
                true
            };
            assert!(refused);
        }
    }
}
