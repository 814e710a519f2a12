//! Untargeted L-infinity PGD (Madry et al.), SPEC.md "Adversarial accuracy":
//! x_{t+1} = clip_[0,1](Proj_eps(x_t + step * sign(grad_x CE(F(x_t), y)))).

use crate::model::{cpu::fused::FusedNet, Model};
use candle_core::{Result, Tensor, Var};
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PgdConfig {
    pub eps: f32,
    pub step: f32,
    pub iters: usize,
    /// Uniform random start in the eps ball, seeded.
    pub random_start: bool,
    /// Image `j` of a batch draws its random start from `seed + j`; callers
    /// pass `seed + first index of the batch`, so every image's start is the
    /// same however the data is batched (OOM halving, the TUI's smaller batches).
    pub seed: u64,
}

impl PgdConfig {
    /// The paper's defaults: eps 8/255, step 2/255, 10 iterations.
    pub fn paper(eps: f32) -> Self {
        PgdConfig {
            eps,
            step: 2.0 / 255.0,
            iters: 10,
            random_start: false,
            seed: 0,
        }
    }
}

/// Parses `8/255` or `0.03137`.
pub fn parse_fraction(s: &str) -> std::result::Result<f32, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f32 = a
                .trim()
                .parse()
                .map_err(|_| format!("invalid number '{s}'"))?;
            let b: f32 = b
                .trim()
                .parse()
                .map_err(|_| format!("invalid number '{s}'"))?;
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("invalid number '{s}'"))?,
    };
    if !v.is_finite() {
        return Err(format!("invalid number '{s}'"));
    }
    Ok(v)
}

/// Uniform noise in [-eps, eps] for `b` images of `per` values; image `j`
/// from its own generator seeded with `seed + j`.
fn start_noise(cfg: &PgdConfig, b: usize, per: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * per);
    for j in 0..b {
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_add(j as u64));
        out.extend((0..per).map(|_| rng.gen_range(-cfg.eps..=cfg.eps)));
    }
    out
}

/// x_0: `x`, or `x` plus the seeded uniform start, clipped to [0,1].
fn start(x: &Tensor, cfg: &PgdConfig) -> Result<Tensor> {
    if !cfg.random_start {
        return Ok(x.clone());
    }
    let b = x.dim(0)?;
    let noise = start_noise(cfg, b, x.elem_count() / b.max(1));
    let noise = Tensor::from_vec(noise, x.shape(), x.device())?;
    (x + noise)?.clamp(0f32, 1f32)
}

/// The result of attacking one batch.
pub struct PgdOutput {
    pub x_adv: Tensor,
    /// Mean cross-entropy at each iterate x_0..x_{T-1} (before each step).
    pub losses: Vec<f32>,
}

/// Runs PGD on a batch `x` ([b,c,h,w] in [0,1]) with labels `y` (u32).
/// `loss_of` maps an input to logits (eval-mode model).
pub fn pgd_with(
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
    logits_of: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<PgdOutput> {
    let x = x.detach();
    let lo = (&x - cfg.eps as f64)?;
    let hi = (&x + cfg.eps as f64)?;
    let mut xt = start(&x, cfg)?;
    let mut losses = Vec::with_capacity(cfg.iters);
    for _ in 0..cfg.iters {
        let v = Var::from_tensor(&xt)?;
        let logits = logits_of(v.as_tensor())?;
        let loss = candle_nn::loss::cross_entropy(&logits, y)?;
        losses.push(loss.to_scalar::<f32>()?);
        let grads = loss.backward()?;
        let g = grads
            .get(v.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no input gradient".into()))?;
        let stepped = (v.as_tensor().detach() + (g.sign()? * cfg.step as f64)?)?;
        xt = stepped.maximum(&lo)?.minimum(&hi)?.clamp(0f32, 1f32)?;
    }
    Ok(PgdOutput { x_adv: xt, losses })
}

/// PGD against a loaded model: on the CPU through the fused network (same
/// iterates as [`pgd_with`] up to float rounding), elsewhere through candle's autograd.
pub fn pgd(model: &Model, x: &Tensor, y: &Tensor, cfg: &PgdConfig) -> crate::Result<PgdOutput> {
    let (_, c, h, w) = x.dims4()?;
    model.check_input(c, h, w)?;
    if let Some(net) = model.fused()? {
        return Ok(pgd_fused(&net, x, y, cfg)?);
    }
    #[cfg(feature = "cudnn")]
    if let Some(net) = model.gpu()? {
        return pgd_gpu(model, &net, x, y, cfg);
    }
    Ok(pgd_with(x, y, cfg, |xi| {
        model.logits(xi).map_err(to_candle)
    })?)
}

/// [`pgd_with`] on plain vectors with the fused network's hand-written gradient.
pub fn pgd_fused(net: &FusedNet, x: &Tensor, y: &Tensor, cfg: &PgdConfig) -> Result<PgdOutput> {
    let dims = x.dims4()?;
    let x0 = x.flatten_all()?.to_vec1::<f32>()?;
    let labels = y.flatten_all()?.to_vec1::<u32>()?;
    let mut xt = if cfg.random_start {
        // The same draws as `pgd_with`.
        let noise = start_noise(cfg, dims.0, x0.len() / dims.0.max(1));
        x0.iter()
            .zip(noise)
            .map(|(&v, n)| (v + n).clamp(0.0, 1.0))
            .collect()
    } else {
        x0.clone()
    };
    let mut losses = Vec::with_capacity(cfg.iters);
    for _ in 0..cfg.iters {
        let (loss, g) = net.loss_and_grad(&xt, dims, &labels)?;
        losses.push(loss);
        for ((v, &g), &x) in xt.iter_mut().zip(&g).zip(&x0) {
            // sign(0) = 0, as candle and torch have it
            let s = if g > 0.0 {
                cfg.step
            } else if g < 0.0 {
                -cfg.step
            } else {
                0.0
            };
            *v = (*v + s).max(x - cfg.eps).min(x + cfg.eps).clamp(0.0, 1.0);
        }
    }
    Ok(PgdOutput {
        x_adv: Tensor::from_vec(xt, dims, x.device())?,
        losses,
    })
}

/// [`pgd_with`] with the cuDNN network's gradient (same iterates up to float
/// rounding); the losses are read back once, after the last step.
#[cfg(feature = "cudnn")]
fn pgd_gpu(
    model: &Model,
    net: &crate::model::cuda::GpuNet,
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
) -> crate::Result<PgdOutput> {
    let x = x.detach();
    let onehot = model.one_hot(y)?;
    let lo = (&x - cfg.eps as f64)?;
    let hi = (&x + cfg.eps as f64)?;
    let mut xt = start(&x, cfg)?;
    let mut losses = Vec::with_capacity(cfg.iters);
    for _ in 0..cfg.iters {
        let (loss, g) = model.gpu_loss_and_grad(net, &xt, &onehot)?;
        losses.push(loss);
        let stepped = (&xt + (g.sign()? * cfg.step as f64)?)?;
        xt = stepped.maximum(&lo)?.minimum(&hi)?.clamp(0f32, 1f32)?;
    }
    let losses = if losses.is_empty() {
        Vec::new()
    } else {
        Tensor::stack(&losses, 0)?.to_vec1::<f32>()?
    };
    Ok(PgdOutput { x_adv: xt, losses })
}

pub(crate) fn to_candle(e: crate::Error) -> candle_core::Error {
    match e {
        crate::Error::Candle(c) => c,
        e => candle_core::Error::Msg(e.to_string()),
    }
}
