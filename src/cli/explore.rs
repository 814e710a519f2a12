//! `semcon explore` (and `semcon` without a command): the flags of the
//! terminal explorer, handed to [`crate::tui`] as plain options.

use super::args::{parse_batch, parse_frac, DataArgs, ModelArgs};
use crate::tui::setup::ExploreOptions;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// Flags of the explorer. Without --checkpoint it opens every
/// checkpoints/*.safetensors (standard, continuity, adv, adv-continuity first);
/// without --samples it evaluates a seeded subset of 2000 samples (0: all).
#[derive(Args, Debug)]
pub struct ExploreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per batch (default: 64 on the CPU, 512 on a GPU; small CPU batches
    /// keep the panels updating often).
    #[arg(long, value_parser = parse_batch)]
    pub batch: Option<usize>,
    /// PGD eps values (step 2/255, 10 iterations).
    #[arg(long, value_delimiter = ',', value_parser = parse_frac,
          default_value = "2/255,4/255,8/255")]
    pub pgd: Vec<f32>,
    /// Cycle through perturbations and levels on a timer (projector mode).
    #[arg(long)]
    pub demo: bool,
    /// Seconds per step of --demo.
    #[arg(long, default_value_t = 4.0)]
    pub demo_secs: f64,
    /// Where `e` writes exports.
    #[arg(long, default_value = "semcon-export")]
    pub export_dir: PathBuf,
}

impl ExploreArgs {
    /// The explorer's options from the flags.
    pub fn options(&self) -> Result<ExploreOptions> {
        Ok(ExploreOptions {
            model: self.model.choice()?,
            data: self.data.choice()?,
            batch: self.batch,
            pgd: self.pgd.clone(),
            demo: self.demo,
            demo_secs: self.demo_secs,
            export_dir: self.export_dir.clone(),
        })
    }
}

pub fn run(a: &ExploreArgs) -> Result<()> {
    crate::tui::explore(&a.options()?)
}
