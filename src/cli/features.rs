//! `semcon features`: a model's features at a layer, or at every layer from
//! one forward pass (with labels, the model's predictions, class names and
//! the layers' names) as an .npz for any analysis.

use super::args::{parse_batch, DataArgs, ModelArgs};
use super::common::check_out;
use crate::data::input::read_input_set;
use crate::data::npyz::{save_npz, NpyArray};
use crate::eval;
use crate::model::Tap;
use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Float32 NCHW images in [0,1] (.npy) instead of a dataset.
    #[arg(long, conflicts_with = "dataset")]
    pub input: Option<PathBuf>,
    /// logits, penultimate, a ResNet's layer1..layer4, a ConvNeXt's or
    /// EfficientNet's stage1..N, a ViT's block1..N (`semcon info` lists a
    /// model's), or all (every layer, from one forward pass, as
    /// `features_LAYER`; `features` is then the logits).
    #[arg(long, default_value = "logits")]
    pub layer: String,
    /// Output .npz: features, preds (the model's predictions), labels and
    /// class_names (with a dataset) and layer (one name, or every layer with
    /// --layer all); the names are numpy string arrays.
    #[arg(long)]
    pub out: PathBuf,
    /// Images per forward pass (a device out of memory halves it and retries).
    #[arg(long, default_value_t = 256, value_parser = parse_batch)]
    pub batch: usize,
}

pub fn run(a: &FeaturesArgs) -> Result<()> {
    check_out(&a.out, &["npz"])?;
    let choice = a.model.choice()?;
    let device = choice.device()?;
    let m = choice.load_one(&device)?;
    let taps: Vec<Tap> = if a.layer == "all" {
        m.taps()
    } else {
        let t: Tap = a.layer.parse()?;
        m.check_tap(t)?;
        vec![t]
    };
    let (set, labels, class_names) = match &a.input {
        Some(p) => {
            let set = a.data.choice()?.subset(read_input_set(p)?)?;
            (set, None, None)
        }
        None => {
            // As eval and the explorer: without -d, the models' default
            // dataset; labels checked; the gray notice.
            let set = crate::session::load_data(&a.data.choice()?, std::slice::from_ref(&m))?;
            let y = Tensor::from_vec(
                set.labels.iter().map(|&v| v as i64).collect::<Vec<_>>(),
                set.len(),
                &Device::Cpu,
            )?;
            let names = set.class_names.clone();
            (set, Some(y), Some(names))
        }
    };
    // The logits always come along (for the predictions), from the same pass.
    let mut want = taps.clone();
    if !want.contains(&Tap::Logits) {
        want.push(Tap::Logits);
    }
    let n = set.len();
    let outs = eval::features_many(
        &m,
        &set,
        eval::Images::Clean,
        &want,
        a.batch,
        &mut |_, _| true,
    )?
    .expect("never cancelled");
    let tensors: Vec<Tensor> = outs
        .into_iter()
        .map(|v| {
            let d = v.len() / n.max(1);
            Tensor::from_vec(v, (n, d), &Device::Cpu)
        })
        .collect::<candle_core::Result<_>>()?;
    let logits = &tensors[want.iter().position(|&t| t == Tap::Logits).expect("asked")];
    let preds = logits.argmax(1)?.to_dtype(candle_core::DType::I64)?;
    let f = &tensors[0];
    // The layers and the class names travel with the features, for `semcon
    // kstar` and for numpy (`f["layer"]`, `f["class_names"]`).
    let layer: Vec<String> = taps.iter().map(Tap::to_string).collect();
    let keys: Vec<String> = layer.iter().map(|l| format!("features_{l}")).collect();
    let mut arrays = vec![("features", NpyArray::Tensor(f))];
    if taps.len() > 1 {
        for (k, t) in keys.iter().zip(&tensors) {
            arrays.push((k.as_str(), NpyArray::Tensor(t)));
        }
    }
    arrays.push(("preds", NpyArray::Tensor(&preds)));
    if let Some(y) = &labels {
        arrays.push(("labels", NpyArray::Tensor(y)));
    }
    arrays.push(("layer", NpyArray::Strings(&layer)));
    if let Some(names) = &class_names {
        arrays.push(("class_names", NpyArray::Strings(names)));
    }
    save_npz(&a.out, &arrays)?;
    eprintln!(
        "wrote {} ({} x {} features at {}{})",
        a.out.display(),
        f.dim(0)?,
        f.dim(1)?,
        layer[0],
        if taps.len() > 1 {
            format!(", and every layer as features_LAYER ({})", layer.join(", "))
        } else {
            String::new()
        }
    );
    Ok(())
}
