//! `semcon features`: a model's features at a layer (with labels, class
//! names and the layer's name) as an .npz for any analysis.

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
    /// logits, penultimate, layer1..layer4.
    #[arg(long, default_value = "logits")]
    pub layer: String,
    /// Output .npz: features, labels and class_names (with a dataset) and
    /// layer; the names are numpy string arrays.
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
    let tap: Tap = a.layer.parse()?;
    let (x, labels, class_names) = match &a.input {
        Some(p) => {
            let set = a.data.choice().subset(read_input_set(p)?)?;
            (set.batch(0, set.len(), &Device::Cpu)?, None, None)
        }
        None => {
            let set = a.data.choice().load(m.input_size)?;
            set.check_labels(m.num_classes())?;
            if let Some(n) = eval::gray_notice(&set, std::slice::from_ref(&m)) {
                eprintln!("notice: {n}");
            }
            let x = set.batch(0, set.len(), &Device::Cpu)?;
            let y = Tensor::from_vec(
                set.labels.iter().map(|&v| v as i64).collect::<Vec<_>>(),
                set.len(),
                &Device::Cpu,
            )?;
            (x, Some(y), Some(set.class_names.clone()))
        }
    };
    let f = eval::batched(&x, a.batch, &device, |xb| m.features(xb, tap))?;
    // The layer and the class names travel with the features, for `semcon
    // kstar` and for numpy (`f["layer"]`, `f["class_names"]`).
    let layer = [tap.to_string()];
    let mut arrays = vec![("features", NpyArray::Tensor(&f))];
    if let Some(y) = &labels {
        arrays.push(("labels", NpyArray::Tensor(y)));
    }
    arrays.push(("layer", NpyArray::Strings(&layer)));
    if let Some(names) = &class_names {
        arrays.push(("class_names", NpyArray::Strings(names)));
    }
    save_npz(&a.out, &arrays)?;
    eprintln!(
        "wrote {} ({} x {} features at {tap})",
        a.out.display(),
        f.dim(0)?,
        f.dim(1)?
    );
    Ok(())
}
