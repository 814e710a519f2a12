//! A linear probe of a network described as layers (ViT, ConvNeXt,
//! EfficientNet): the backbone's eval-mode features at the head's input,
//! detached, under a head whose weight and bias are the trainer's
//! variables; written back as the checkpoint's own tensors with only the
//! head's changed, so the file loads in torchvision like the original.

use crate::model::described::LayerNet;
use crate::model::layers::Op;
use crate::model::Tap;
use crate::Result;
use candle_core::{Device, Tensor};
use candle_nn::{Module, VarMap};
use std::collections::HashMap;
use std::sync::Arc;

/// A described network whose last layer (the classifier head) learns.
pub struct Probe {
    /// The checkpoint's network (its own head inside), on the training device.
    pub net: Arc<LayerNet>,
    /// The head's torchvision module (`heads.head`, `classifier.2`).
    pub head: String,
    /// Outputs of the head being trained.
    pub classes: usize,
    /// The checkpoint's floating-point tensors as read (CPU), written back.
    source: HashMap<String, Tensor>,
}

impl Probe {
    /// A probe of `net` (read from the tensors `source`) with a head of
    /// `classes` outputs. The head is `net`'s last layer, a Linear reading
    /// the penultimate tap.
    pub fn new(
        net: Arc<LayerNet>,
        source: HashMap<String, Tensor>,
        classes: usize,
    ) -> Result<Probe> {
        let head = net
            .taps
            .iter()
            .find(|(t, _, _)| *t == Tap::Logits)
            .map(|(_, _, m)| m.clone())
            .ok_or_else(|| crate::invalid!("{} has no classifier head to probe", net.arch))?;
        if !matches!(net.ops.last(), Some(Op::Linear { .. })) {
            return Err(crate::invalid!(
                "{}: its last layer is not the Linear classifier head {head}",
                net.arch
            ));
        }
        Ok(Probe {
            net,
            head,
            classes,
            source,
        })
    }

    /// Size of the head's input (the penultimate features).
    pub fn features_dim(&self) -> usize {
        self.net
            .taps
            .iter()
            .find(|(t, _, _)| *t == Tap::Penultimate)
            .map(|(_, d, _)| *d)
            .unwrap_or(0)
    }

    pub fn weight_name(&self) -> String {
        format!("{}.weight", self.head)
    }

    pub fn bias_name(&self) -> String {
        format!("{}.bias", self.head)
    }

    /// The head's (weight, bias) as they stand in `varmap`.
    fn head_tensors(&self, varmap: &VarMap) -> candle_core::Result<(Tensor, Tensor)> {
        let data = varmap.data().lock().expect("varmap lock");
        let get = |n: String| {
            data.get(&n)
                .map(|v| v.as_tensor().clone())
                .ok_or_else(|| candle_core::Error::Msg(format!("probe head variable {n} missing")))
        };
        Ok((get(self.weight_name())?, get(self.bias_name())?))
    }

    /// Logits of normalised images: the backbone's features (eval mode, no
    /// gradient) through the head's variables.
    pub fn logits(&self, x: &Tensor, varmap: &VarMap) -> candle_core::Result<Tensor> {
        let f = self
            .net
            .features_many(x, &[Tap::Penultimate])?
            .pop()
            .expect("one tap asked, one given")
            .detach();
        let (w, b) = self.head_tensors(varmap)?;
        candle_nn::Linear::new(w, Some(b)).forward(&f)
    }

    /// The network with the head as it stands in `varmap` (an inference copy).
    pub fn with_head(&self, varmap: &VarMap) -> Result<LayerNet> {
        let (w, b) = self.head_tensors(varmap)?;
        let mut net = (*self.net).clone();
        let last = net.ops.len() - 1;
        net.ops[last] = Op::Linear {
            w: w.detach(),
            b: b.detach(),
        };
        net.num_classes = self.classes;
        for (t, d, _) in net.taps.iter_mut() {
            if *t == Tap::Logits {
                *d = self.classes;
            }
        }
        Ok(net)
    }

    /// Every tensor of the checkpoint except the head's, as read, plus each
    /// BatchNorm's `num_batches_tracked` (the checkpoint's count, from
    /// `base`, else 0: a probe runs no training-mode batch), so that
    /// torchvision's `load_state_dict(strict=True)` takes the file.
    pub fn backbone_tensors(&self, base: &HashMap<String, i64>) -> Result<HashMap<String, Tensor>> {
        let (w, b) = (self.weight_name(), self.bias_name());
        let mut out = HashMap::new();
        for (name, t) in &self.source {
            if *name == w || *name == b {
                continue;
            }
            out.insert(name.clone(), t.clone());
            if let Some(p) = name.strip_suffix(".running_mean") {
                let key = format!("{p}.num_batches_tracked");
                let n = base.get(&key).copied().unwrap_or(0);
                out.insert(key, Tensor::new(n, &Device::Cpu)?);
            }
        }
        Ok(out)
    }
}
