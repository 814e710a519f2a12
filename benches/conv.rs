//! Per-layer timings of the CPU convolution against candle's conv2d, for the
//! convolutions of a cifar-stem ResNet-18 (width 64) on 32x32 inputs.
//!
//!     cargo bench --bench conv -- [BATCH] [ITERS] [--candle] [--ops] [--backward]
//!
//! --candle: candle's conv2d; --ops: im2col from candle ops + matmul;
//! --backward: forward + input gradient (candle's backward also computes the
//! weight gradient, it cannot skip it).
//!
//! RAYON_NUM_THREADS sets the thread count.

use candle_core::{Device, Tensor, Var};
use semcon::model::cpu::conv::conv2d;
use std::time::Instant;

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name; clock ticks of 1/100 s.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Seconds per call: (wall, CPU over all threads).
fn time(iters: usize, f: &dyn Fn()) -> (f64, f64) {
    f();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for _ in 0..iters {
        f();
    }
    (
        t0.elapsed().as_secs_f64() / iters as f64,
        (cpu_seconds() - c0) / iters as f64,
    )
}

/// GFLOP/s of wall time, GFLOP per CPU-second (load-independent), ms per call.
fn rate(gflop: f64, (wall, cpu): (f64, f64)) -> String {
    format!(
        "{:6.1} ({:5.1}/core) GFLOP/s {:7.1} ms",
        gflop / wall,
        gflop / cpu.max(1e-9),
        wall * 1e3
    )
}

/// Option (a) of the design: im2col from differentiable candle ops (pad, narrow,
/// reshape for the stride, stack) and a batched matmul; kept here for comparison.
fn conv_from_ops(x: &Tensor, w: &Tensor, s: usize, p: usize) -> candle_core::Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (o, _, kh, kw) = w.dims4()?;
    let (oh, ow) = ((h + 2 * p - kh) / s + 1, (wd + 2 * p - kw) / s + 1);
    // Enough padding at the end that every tap can take s*oh rows and s*ow columns.
    let xp = x.pad_with_zeros(2, p, (s * oh + kh).saturating_sub(h + p))?;
    let xp = xp.pad_with_zeros(3, p, (s * ow + kw).saturating_sub(wd + p))?;
    let mut taps = Vec::with_capacity(kh * kw);
    for ki in 0..kh {
        for kj in 0..kw {
            let t = xp.narrow(2, ki, s * oh)?.narrow(3, kj, s * ow)?;
            let t = if s == 1 {
                t
            } else {
                t.reshape((b, c, oh, s, ow, s))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((b, c, oh, ow))?
            };
            taps.push(t);
        }
    }
    let col = Tensor::stack(&taps, 2)?.reshape((b, c * kh * kw, oh * ow))?;
    let wm = w
        .reshape((1, o, c * kh * kw))?
        .broadcast_as((b, o, c * kh * kw))?;
    wm.matmul(&col)?.reshape((b, o, oh, ow))
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (batch, iters) = (
        nums.first().copied().unwrap_or(64),
        nums.get(1).copied().unwrap_or(3),
    );
    let candle = args.iter().any(|a| a == "--candle");
    let backward = args.iter().any(|a| a == "--backward");
    let ops = args.iter().any(|a| a == "--ops");
    println!(
        "batch {batch}, {} threads",
        candle_core::utils::get_num_threads()
    );
    // (in channels, out channels, input size, kernel, stride)
    let layers = [
        (3, 64, 32, 3, 1),
        (64, 64, 32, 3, 1),
        (64, 128, 32, 3, 2),
        (64, 128, 32, 1, 2),
        (128, 128, 16, 3, 1),
        (128, 256, 16, 3, 2),
        (256, 256, 8, 3, 1),
        (256, 512, 8, 3, 2),
        (512, 512, 4, 3, 1),
    ];
    let dev = Device::Cpu;
    for (c, o, hw, k, s) in layers {
        let x = Tensor::rand(-1f32, 1f32, (batch, c, hw, hw), &dev)?;
        let w = Tensor::rand(-0.1f32, 0.1f32, (o, c, k, k), &dev)?;
        let p = k / 2;
        let oh = (hw + 2 * p - k) / s + 1;
        let gflop = 2.0 * (batch * o * oh * oh * c * k * k) as f64 / 1e9;
        let ours = time(iters, &|| {
            conv2d(&x, &w, s, p).unwrap();
        });
        let mut line = format!(
            "{c:>3}->{o:<3} {hw:>2}x{hw:<2} k{k} s{s}: ours {}",
            rate(gflop, ours)
        );
        if candle {
            let theirs = time(iters, &|| {
                x.conv2d(&w, p, s, 1, 1).unwrap();
            });
            line += &format!(" | candle {}", rate(gflop, theirs));
        }
        if ops {
            let y = conv_from_ops(&x, &w, s, p)?;
            let d = (y - conv2d(&x, &w, s, p)?)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(d < 1e-3, "im2col from candle ops differs by {d}");
            let t = time(iters, &|| {
                conv_from_ops(&x, &w, s, p).unwrap();
            });
            line += &format!(" | candle-ops im2col {}", rate(gflop, t));
        }
        if backward {
            let xv = Var::from_tensor(&x)?;
            let t = time(iters, &|| {
                conv2d(xv.as_tensor(), &w, s, p)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
            });
            line += &format!(" | ours fwd+dx {}", rate(2.0 * gflop, t));
            if candle {
                let t = time(iters, &|| {
                    xv.as_tensor()
                        .conv2d(&w, p, s, 1, 1)
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .backward()
                        .unwrap();
                });
                line += &format!(" | candle fwd+dx {}", rate(2.0 * gflop, t));
            }
        }
        println!("{line}");
    }
    // Reference: a plain matmul of the same size as the 64->64 layer at batch 1.
    let a = Tensor::rand(-1f32, 1f32, (64, 576), &dev)?;
    let b = Tensor::rand(-1f32, 1f32, (576, 1024 * batch.min(16)), &dev)?;
    let t = time(iters, &|| {
        a.matmul(&b).unwrap();
    });
    println!(
        "matmul 64x576x{}: {}",
        1024 * batch.min(16),
        rate(2.0 * 64.0 * 576.0 * 1024.0 * batch.min(16) as f64 / 1e9, t)
    );
    Ok(())
}
