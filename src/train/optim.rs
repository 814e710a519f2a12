//! The optimisers training and fine-tuning use, written to PyTorch's update
//! rules step for step (`torch.optim.SGD`, `Adam`, `AdamW`, single-tensor
//! form, no amsgrad, no nesterov, no dampening), so that a step here and a
//! step there move a parameter the same way (tests/fixtures/make_transfer.py).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::Serialize;

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// `torch.optim.SGD` (momentum, L2 weight decay added to the gradient).
    Sgd,
    /// `torch.optim.Adam` (L2 weight decay added to the gradient).
    Adam,
    /// `torch.optim.AdamW` (decoupled weight decay).
    Adamw,
}

/// The optimiser's settings (PyTorch's names and defaults: betas 0.9/0.999,
/// eps 1e-8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct OptimConfig {
    pub kind: OptimKind,
    pub lr: f64,
    /// SGD momentum (0 = plain SGD).
    pub momentum: f64,
    pub weight_decay: f64,
}

impl OptimConfig {
    /// Adam without weight decay, at `lr`.
    pub fn adam(lr: f64) -> Self {
        OptimConfig {
            kind: OptimKind::Adam,
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// An optimiser over a fixed list of variables, with its per-variable state.
pub struct Optimizer {
    cfg: OptimConfig,
    vars: Vec<Var>,
    /// SGD momentum buffer, or Adam's first moment.
    first: Vec<Option<Tensor>>,
    /// Adam's second moment.
    second: Vec<Option<Tensor>>,
    step: i32,
}

impl Optimizer {
    pub fn new(vars: Vec<Var>, cfg: OptimConfig) -> Self {
        let n = vars.len();
        Optimizer {
            cfg,
            vars,
            first: vec![None; n],
            second: vec![None; n],
            step: 0,
        }
    }

    /// The variables it updates, in order.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// One step with the gradients in `grads` (a variable without a gradient
    /// is left alone, as PyTorch skips parameters whose `.grad` is None).
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.cfg;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var) else {
                continue;
            };
            let p = var.as_tensor();
            let mut g = g.clone();
            if c.weight_decay != 0.0 && c.kind != OptimKind::Adamw {
                g = (g + (p * c.weight_decay)?)?;
            }
            match c.kind {
                OptimKind::Sgd => {
                    let d = if c.momentum != 0.0 {
                        let buf = match &self.first[i] {
                            None => g,
                            Some(b) => ((b * c.momentum)? + g)?,
                        };
                        self.first[i] = Some(buf.clone());
                        buf
                    } else {
                        g
                    };
                    var.set(&(p - (d * c.lr)?)?)?;
                }
                OptimKind::Adam | OptimKind::Adamw => {
                    let mut p = p.clone();
                    if c.kind == OptimKind::Adamw && c.weight_decay != 0.0 {
                        p = (p * (1.0 - c.lr * c.weight_decay))?;
                    }
                    // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
                    let m = match &self.first[i] {
                        None => (&g * (1.0 - BETA1))?,
                        Some(m) => (m + ((&g - m)? * (1.0 - BETA1))?)?,
                    };
                    let v = match &self.second[i] {
                        None => (g.sqr()? * (1.0 - BETA2))?,
                        Some(v) => ((v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?,
                    };
                    let bc1 = 1.0 - BETA1.powi(self.step);
                    let bc2 = 1.0 - BETA2.powi(self.step);
                    let denom = ((v.sqrt()? / bc2.sqrt())? + EPS)?;
                    let upd = ((&m / denom)? * (c.lr / bc1))?;
                    var.set(&(p - upd)?)?;
                    self.first[i] = Some(m);
                    self.second[i] = Some(v);
                }
            }
        }
        Ok(())
    }
}
