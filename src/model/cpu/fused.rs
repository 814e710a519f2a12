//! The eval-mode ResNet on the CPU without candle's autograd, for PGD and
//! inference: BatchNorm folded into the convolutions, bias + residual + ReLU
//! fused after each convolution, and the input gradient of the cross-entropy
//! (or of each image's raw target logit, for saliency and Integrated
//! Gradients) by a hand-written backward pass.
//!
//! Why: a PGD step is a forward and a backward pass. candle's autograd
//! allocates and zero-fills a gradient per node and every op synchronises the
//! threads, which on small models (the shipped ones are width 8) costs more than
//! the arithmetic. Here a batch is cut into chunks of images and each chunk goes
//! through the whole network on one rayon worker, in a channel-major layout
//! (`[C, nb*H*W]`), so every convolution is one im2col + gemm whose output is
//! already the next layer's input. Stride-1 "same" convolutions are
//! differentiated as a convolution with the flipped, transposed kernel (as
//! cheap as the forward pass); the others by a gemm and col2im.
//!
//! Only f32 on the CPU; other devices and dtypes use candle's graph
//! ([`crate::model::Model::fused`] says which). Checked against candle's
//! autograd in the unit tests below and, through PGD, against PyTorch.

use super::folded::FConv;
use super::im2col::Geom;
use crate::model::tap::Tap;
use candle_core::Result;
use rayon::prelude::*;
use std::cell::RefCell;

/// One residual block: its convolutions (ReLU between) and the shortcut.
#[derive(Clone, Debug)]
pub struct FBlock {
    /// The stage (1..=4, torchvision's `layerN`) the block belongs to.
    pub stage: u8,
    pub convs: Vec<FConv>,
    pub down: Option<FConv>,
}

/// The folded network with its input normalisation.
#[derive(Clone, Debug)]
pub struct FusedNet {
    pub stem: FConv,
    /// torchvision's 3x3 stride-2 max pool after the ImageNet stem.
    pub maxpool: bool,
    pub blocks: Vec<FBlock>,
    /// `[K, D]`.
    pub fc_w: Vec<f32>,
    pub fc_b: Vec<f32>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

thread_local! {
    /// im2col scratch of this worker, kept between chunks.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// An activation kept for the backward pass: `[c, nb*h*w]` after ReLU
/// (its geometry is in the convolutions' `Geom`s).
type Act = Vec<f32>;

/// What a chunk gives back.
struct ChunkOut {
    /// One output per wanted tap (the logits when labelled).
    taps: Vec<Vec<f32>>,
    loss: f64,
    grad: Vec<f32>,
}

/// Input batch shape `[b, c, h, w]` of NCHW images in [0, 1].
pub type Dims = (usize, usize, usize, usize);

/// What the backward pass differentiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Objective {
    /// The mean cross-entropy over the batch.
    CrossEntropy,
    /// The sum of each image's raw logit of its class.
    TargetLogit,
}

impl FusedNet {
    /// Whether any convolution is grouped (a ResNeXt), which the cuDNN
    /// network does not take.
    pub fn grouped(&self) -> bool {
        std::iter::once(&self.stem)
            .chain(
                self.blocks
                    .iter()
                    .flat_map(|b| b.convs.iter().chain(&b.down)),
            )
            .any(|c| c.groups != 1)
    }

    fn classes(&self) -> usize {
        self.fc_b.len()
    }

    /// Logits `[b, K]` for images in [0, 1].
    pub fn logits(&self, x: &[f32], dims: Dims) -> Result<Vec<f32>> {
        self.features(x, dims, Tap::Logits)
    }

    /// Features `[b, D]` at `tap` (stage taps globally average-pooled, as
    /// [`super::ResNet::features`]).
    pub fn features(&self, x: &[f32], dims: Dims, tap: Tap) -> Result<Vec<f32>> {
        Ok(self.run(x, dims, None, &[tap])?.0.remove(0))
    }

    /// Features at each of `taps`, from one forward pass (it stops after the
    /// deepest tap asked for).
    pub fn features_many(&self, x: &[f32], dims: Dims, taps: &[Tap]) -> Result<Vec<Vec<f32>>> {
        if taps.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.run(x, dims, None, taps)?.0)
    }

    /// Mean cross-entropy over the batch and its gradient w.r.t. the images.
    pub fn loss_and_grad(&self, x: &[f32], dims: Dims, labels: &[u32]) -> Result<(f32, Vec<f32>)> {
        let (_, loss, grad) = self.run(
            x,
            dims,
            Some((labels, Objective::CrossEntropy)),
            &[Tap::Logits],
        )?;
        Ok((loss, grad))
    }

    /// Each image's raw logit of class `targets[i]` and its gradient w.r.t.
    /// the image (what saliency and Integrated Gradients are made of).
    pub fn target_logit_grad(
        &self,
        x: &[f32],
        dims: Dims,
        targets: &[u32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut taps, _, grad) = self.run(
            x,
            dims,
            Some((targets, Objective::TargetLogit)),
            &[Tap::Logits],
        )?;
        let logits = taps.remove(0);
        let k = self.classes();
        let picked = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| logits[i * k + t as usize])
            .collect();
        Ok((picked, grad))
    }

    fn run(
        &self,
        x: &[f32],
        dims: Dims,
        labels: Option<(&[u32], Objective)>,
        want: &[Tap],
    ) -> Result<(Vec<Vec<f32>>, f32, Vec<f32>)> {
        let (b, cx, h, w) = dims;
        let c0 = self.stem.c;
        if x.len() != b * cx * h * w || !(cx == c0 || cx == 1) {
            candle_core::bail!(
                "fused forward: input {dims:?} does not fit a model taking {c0} channels"
            )
        }
        if let Some((l, _)) = labels {
            if l.len() != b {
                candle_core::bail!("fused forward: {} labels for {b} images", l.len())
            }
            let k = self.classes();
            if let Some(bad) = l.iter().find(|&&y| y as usize >= k) {
                candle_core::bail!("label {bad} is out of range for a model with {k} classes")
            }
        }
        if b == 0 {
            return Ok((vec![Vec::new(); want.len()], f32::NAN, Vec::new()));
        }
        let nb = chunk_size(b, h * w);
        let img = cx * h * w;
        let starts: Vec<usize> = (0..b).step_by(nb).collect();
        let outs: Vec<ChunkOut> = starts
            .par_iter()
            .with_max_len(1)
            .map(|&s| {
                let e = (s + nb).min(b);
                let xs = &x[s * img..e * img];
                COL.with(|cell| {
                    let mut col = cell.take();
                    let r = self.chunk(
                        xs,
                        (e - s, cx, h, w),
                        labels.map(|(l, o)| (&l[s..e], b, o)),
                        want,
                        &mut col,
                    );
                    cell.replace(col);
                    r
                })
            })
            .collect::<Result<_>>()?;
        let mut taps = vec![Vec::new(); want.len()];
        let mut grad = Vec::with_capacity(if labels.is_some() { x.len() } else { 0 });
        let mut loss = 0f64;
        for o in outs {
            for (t, v) in taps.iter_mut().zip(o.taps) {
                t.extend(v);
            }
            grad.extend(o.grad);
            loss += o.loss;
        }
        Ok((taps, (loss / b as f64) as f32, grad))
    }

    /// Forward (and backward when labelled) for `nb` images.
    fn chunk(
        &self,
        x: &[f32],
        (nb, cx, h, w): Dims,
        labels: Option<(&[u32], usize, Objective)>,
        want: &[Tap],
        col: &mut Vec<f32>,
    ) -> Result<ChunkOut> {
        // The wanted taps, filled as the forward pass reaches them; done
        // (without labels) once all are.
        let mut got: Vec<Option<Vec<f32>>> = vec![None; want.len()];
        let mut put = |tap: Tap, v: &dyn Fn() -> Vec<f32>| -> bool {
            let mut value = None;
            for (w, g) in want.iter().zip(got.iter_mut()) {
                if *w == tap {
                    *g = Some(value.get_or_insert_with(v).clone());
                }
            }
            got.iter().all(Option::is_some)
        };
        let done = |got: Vec<Option<Vec<f32>>>| ChunkOut {
            taps: got.into_iter().map(Option::unwrap_or_default).collect(),
            loss: 0.0,
            grad: Vec::new(),
        };
        let (c0, pl) = (self.stem.c, h * w);
        // Activations are kept for the backward pass only.
        let grad = labels.is_some();
        // Normalise into [C, nb*H*W] (gray replicated to every channel).
        let mut a0 = vec![0f32; c0 * nb * pl];
        for c in 0..c0 {
            let (m, sd, src_c) = (self.mean[c], self.std[c], if cx == 1 { 0 } else { c });
            for i in 0..nb {
                let src = &x[(i * cx + src_c) * pl..][..pl];
                let dst = &mut a0[(c * nb + i) * pl..][..pl];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = (v - m) / sd;
                }
            }
        }
        let gs = self.stem.geom(nb, h, w)?;
        let mut y = self.stem.forward(&a0, &gs, col);
        self.stem.epilogue(&mut y, None, true);
        let (mut hh, mut ww) = (gs.oh, gs.ow);
        let mut acts: Vec<Act> = Vec::new();
        let mut pool_idx = Vec::new();
        if self.maxpool {
            let (p, idx, oh, ow) = max_pool(&y, self.stem.o, nb, hh, ww);
            if grad {
                acts.push(y);
            }
            pool_idx = idx;
            (y, hh, ww) = (p, oh, ow);
        }
        // `y` is the current activation; each block pushes its input and middles.
        let mut geoms: Vec<Vec<Geom>> = Vec::with_capacity(self.blocks.len());
        for (bi, blk) in self.blocks.iter().enumerate() {
            let input = y;
            let mut gv = Vec::with_capacity(blk.convs.len() + 1);
            let shortcut = match &blk.down {
                Some(d) => {
                    let g = d.geom(nb, hh, ww)?;
                    let mut s = d.forward(&input, &g, col);
                    d.epilogue(&mut s, None, false);
                    gv.push(g);
                    Some(s)
                }
                None => None,
            };
            let last = blk.convs.len() - 1;
            let (mut ch, mut cw) = (hh, ww);
            let mut cur: Option<Vec<f32>> = None;
            let mut mids: Vec<Act> = Vec::new();
            for (i, cv) in blk.convs.iter().enumerate() {
                let g = cv.geom(nb, ch, cw)?;
                let src = cur.as_deref().unwrap_or(&input);
                let mut out = cv.forward(src, &g, col);
                if i == last {
                    let res = shortcut.as_deref().unwrap_or(&input);
                    if res.len() != out.len() {
                        candle_core::bail!("fused forward: residual shape mismatch")
                    }
                    cv.epilogue(&mut out, Some(res), true);
                } else {
                    cv.epilogue(&mut out, None, true);
                }
                if let Some(prev) = cur.take() {
                    mids.push(prev);
                }
                cur = Some(out);
                (ch, cw) = (g.oh, g.ow);
                gv.push(g);
            }
            if grad {
                acts.push(input);
                acts.extend(mids);
            }
            y = cur.expect("a block has convolutions");
            (hh, ww) = (ch, cw);
            geoms.push(gv);
            let stage_ends = self.blocks.get(bi + 1).is_none_or(|n| n.stage != blk.stage);
            if stage_ends && want.contains(&Tap::Layer(blk.stage)) && !grad {
                let c = y.len() / (nb * hh * ww).max(1);
                if put(Tap::Layer(blk.stage), &|| avg_pool(&y, c, nb, hh * ww)) {
                    return Ok(done(got));
                }
            }
        }
        // Global average pool and fc.
        let d = self.fc_w.len() / self.classes().max(1);
        let lpl = hh * ww;
        if y.len() != d * nb * lpl {
            candle_core::bail!("fused forward: features do not fit fc")
        }
        let pooled = avg_pool(&y, d, nb, lpl);
        if want.contains(&Tap::Penultimate) && !grad && put(Tap::Penultimate, &|| pooled.clone()) {
            return Ok(done(got));
        }
        let k = self.classes();
        let mut logits = vec![0f32; nb * k];
        for i in 0..nb {
            for ki in 0..k {
                let wr = &self.fc_w[ki * d..][..d];
                let pr = &pooled[i * d..][..d];
                logits[i * k + ki] =
                    self.fc_b[ki] + wr.iter().zip(pr).map(|(a, b)| a * b).sum::<f32>();
            }
        }
        let Some((labels, total, objective)) = labels else {
            put(Tap::Logits, &|| logits.clone());
            return Ok(done(got));
        };
        // Cross-entropy (mean over the whole batch) and d/dlogits, or each
        // image's target logit (d/dlogits one-hot).
        let mut loss = 0f64;
        let mut dlog = vec![0f32; nb * k];
        for i in (0..nb).filter(|_| objective == Objective::TargetLogit) {
            let yi = labels[i] as usize;
            loss += logits[i * k + yi] as f64;
            dlog[i * k + yi] = 1.0;
        }
        for i in (0..nb).filter(|_| objective == Objective::CrossEntropy) {
            let row = &logits[i * k..][..k];
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let se: f32 = row.iter().map(|v| (v - mx).exp()).sum();
            let lse = mx + se.ln();
            let yi = labels[i] as usize;
            loss += (lse - row[yi]) as f64;
            for ki in 0..k {
                let p = (row[ki] - lse).exp();
                dlog[i * k + ki] = (p - if ki == yi { 1.0 } else { 0.0 }) / total as f32;
            }
        }
        // Back through fc and the pool: g [D, nb*lpl].
        let mut g = vec![0f32; d * nb * lpl];
        for i in 0..nb {
            for di in 0..d {
                let mut s = 0f32;
                for ki in 0..k {
                    s += dlog[i * k + ki] * self.fc_w[ki * d + di];
                }
                g[(di * nb + i) * lpl..][..lpl].fill(s / lpl as f32);
            }
        }
        // Back through the blocks; `y` is the last block's output.
        let mut out_act = y;
        for (blk, gv) in self.blocks.iter().zip(&geoms).rev() {
            mask(&mut g, &out_act);
            let nconv = blk.convs.len();
            let mids: Vec<Act> = acts.split_off(acts.len() - (nconv - 1));
            let input = acts.pop().expect("block input kept");
            let gc = &gv[gv.len() - nconv..];
            let mut dx = vec![0f32; input.len()];
            match &blk.down {
                Some(dn) => dn.backward(&g, &gv[0], &mut dx, false, col),
                None => dx.copy_from_slice(&g),
            }
            for i in (0..nconv).rev() {
                if i == 0 {
                    blk.convs[0].backward(&g, &gc[0], &mut dx, true, col);
                } else {
                    let m = &mids[i - 1];
                    let mut gi = vec![0f32; m.len()];
                    blk.convs[i].backward(&g, &gc[i], &mut gi, false, col);
                    mask(&mut gi, m);
                    g = gi;
                }
            }
            g = dx;
            out_act = input;
        }
        if self.maxpool {
            let pre = acts.pop().expect("stem output kept");
            let mut gp = vec![0f32; pre.len()];
            for (&j, &v) in pool_idx.iter().zip(&g) {
                gp[j as usize] += v;
            }
            g = gp;
            out_act = pre;
        }
        mask(&mut g, &out_act);
        let mut da0 = vec![0f32; a0.len()];
        self.stem.backward(&g, &gs, &mut da0, false, col);
        // d/dx of the normalisation (summed over replicated gray channels).
        let mut grad = vec![0f32; nb * cx * pl];
        for c in 0..c0 {
            let (sd, dst_c) = (self.std[c], if cx == 1 { 0 } else { c });
            for i in 0..nb {
                let src = &da0[(c * nb + i) * pl..][..pl];
                let dst = &mut grad[(i * cx + dst_c) * pl..][..pl];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d += v / sd;
                }
            }
        }
        // labelled: the logits are the one output
        Ok(ChunkOut {
            taps: vec![logits],
            loss,
            grad,
        })
    }
}

/// `[C, nb*P]` to per-image channel means `[nb, C]`.
fn avg_pool(y: &[f32], c: usize, nb: usize, plane: usize) -> Vec<f32> {
    let mut pooled = vec![0f32; nb * c];
    for ci in 0..c {
        for i in 0..nb {
            let s: f32 = y[(ci * nb + i) * plane..][..plane].iter().sum();
            pooled[i * c + ci] = s / plane as f32;
        }
    }
    pooled
}

/// g = 0 where the (post-ReLU) activation is not positive.
fn mask(g: &mut [f32], act: &[f32]) {
    // A select, not a conditional store, so it vectorises.
    for (g, &a) in g.iter_mut().zip(act) {
        *g = if a > 0.0 { *g } else { 0.0 };
    }
}

/// Images per chunk: about 8,192 input pixels (enough columns per gemm in the
/// deepest stage; one image of 224x224 is already more, and a chunk's
/// activations, kept for the backward pass, stay in the tens of MB), at most
/// 16, and at least one chunk per thread.
fn chunk_size(b: usize, plane: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let want = 8192usize.div_ceil(plane.max(1)).clamp(1, 16);
    want.min(b.div_ceil(threads)).max(1)
}

/// torchvision's `MaxPool2d(3, 2, 1)` on `[C, nb*H*W]`; returns the output and,
/// per output, the flat index of its (first) maximum.
fn max_pool(
    x: &[f32],
    c: usize,
    nb: usize,
    h: usize,
    w: usize,
) -> (Vec<f32>, Vec<u32>, usize, usize) {
    let (oh, ow) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
    let mut out = vec![0f32; c * nb * oh * ow];
    let mut idx = vec![0u32; out.len()];
    for plane in 0..c * nb {
        let base = plane * h * w;
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut bi) = (f32::NEG_INFINITY, base);
                for ky in 0..3 {
                    let iy = (oy * 2 + ky) as isize - 1;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    for kx in 0..3 {
                        let ix = (ox * 2 + kx) as isize - 1;
                        if ix < 0 || ix as usize >= w {
                            continue;
                        }
                        let j = base + iy as usize * w + ix as usize;
                        if x[j] > best || x[j].is_nan() {
                            (best, bi) = (x[j], j);
                        }
                    }
                }
                let o = plane * oh * ow + oy * ow + ox;
                out[o] = best;
                idx[o] = bi as u32;
            }
        }
    }
    (out, idx, oh, ow)
}
