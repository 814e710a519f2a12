//! The command line: one file per command, each holding its clap arguments
//! and its `run` ([`explore`], [`eval`], [`attack`], [`features`],
//! [`explain`], [`perturb`], [`kstar`], [`train`], [`transfer`], [`info`], [`bench`]); the argument groups they
//! share in [`args`], shared helpers in [`common`]. Each command is a thin
//! layer over the library; errors are printed as one line, exit code 1.

pub mod args;
pub mod attack;
pub mod bench;
pub mod common;
pub mod eval;
pub mod explain;
pub mod explore;
pub mod features;
pub mod info;
pub mod kstar;
pub mod perturb;
pub mod train;
pub mod transfer;

pub use args::{DataArgs, ModelArgs};
pub use attack::AttackArgs;
pub use bench::BenchArgs;
pub use eval::EvalArgs;
pub use explain::ExplainArgs;
pub use explore::ExploreArgs;
pub use features::FeaturesArgs;
pub use info::InfoArgs;
pub use kstar::KstarArgs;
pub use perturb::PerturbArgs;
pub use train::TrainArgs;
pub use transfer::TransferArgs;

use crate::error::format_error;
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "semcon",
    version,
    about = "Semantic continuity and k* explorer for image classifiers",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a command: the explorer, with `semcon explore`'s options
    /// (`semcon --demo`, `semcon -c A.pth -c B.pth -d DATA`).
    #[command(flatten)]
    pub explore: ExploreArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write features (and labels) of a model at a layer to an .npz file.
    Features(FeaturesArgs),
    /// Evaluate checkpoints: clean accuracy, perturbations (accuracy, DS, discontinuity), PGD, k*.
    Eval(EvalArgs),
    /// PGD-attack a dataset and write the adversarial images.
    Attack(AttackArgs),
    /// Explain each model's decision on the same images (saliency,
    /// Integrated Gradients, GradCAM with Captum's semantics; LIME as the
    /// lime package) into an .npz or the paper's figure (.png).
    Explain(ExplainArgs),
    /// Train a model variant (standard, continuity, adv, adv-continuity), or
    /// fine-tune a checkpoint on a dataset (--init, --freeze).
    Train(TrainArgs),
    /// Fine-tune several checkpoints the same way on one dataset and compare
    /// their test accuracy (the paper's Table 3).
    Transfer(TransferArgs),
    /// Write perturbed images (.npy, float32 NCHW) or a before/after grid (.png).
    Perturb(PerturbArgs),
    /// Open the terminal explorer (the default without a command).
    ///
    /// Without --checkpoint it opens every checkpoints/*.safetensors (standard,
    /// continuity, adv, adv-continuity first, up to 4 side by side); without
    /// --dataset the builtin Fashion-MNIST test set (its colour split when the
    /// models were trained on colour data); without --samples a seeded subset
    /// of 2000 samples (--samples 0: all). Press ? inside for the keys.
    Explore(ExploreArgs),
    /// k* distribution of features (.npz from `semcon features`, or .npy with --labels).
    Kstar(KstarArgs),
    /// What semcon makes of a checkpoint: family, variant, parameters, input,
    /// normalisation, classes and taps, each with where it came from.
    Info(InfoArgs),
    /// Time a random-init ResNet on random inputs (forward, and forward+backward w.r.t. the input).
    Bench(BenchArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Features(a)) => features::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Attack(a)) => attack::run(&a),
        Some(Command::Explain(a)) => explain::run(&a),
        Some(Command::Train(a)) => train::run(&a),
        Some(Command::Transfer(a)) => transfer::run(&a),
        Some(Command::Perturb(a)) => perturb::run(&a),
        Some(Command::Explore(a)) => explore::run(&a),
        None => explore::run(&cli.explore),
        Some(Command::Kstar(a)) => kstar::run(&a),
        Some(Command::Info(a)) => info::run(&a),
        Some(Command::Bench(a)) => bench::run(&a),
    }
}

/// Entry point: parses, runs, prints errors as one line; returns the exit code.
pub fn main() -> i32 {
    // Output piped into a program that stops reading (`semcon kstar ... |
    // head`) ends semcon quietly, as it ends any Unix tool, instead of a
    // "failed printing to stdout" panic: the default action of SIGPIPE,
    // which Rust's runtime sets to ignored.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // Usage errors: one line, exit code 2 as usual.
            eprintln!("error: {} (see semcon --help)", usage_line(&e.to_string()));
            return 2;
        }
    };
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", format_error(&e));
            1
        }
    };
    // A folder still being decoded in the background (the explorer quit
    // early): its unfinished cache file goes too.
    crate::data::cache::remove_unfinished();
    code
}

/// A clap usage error on one line: its message with the details clap puts on
/// the lines below (the missing arguments, the possible values, a tip),
/// without the usage and help lines.
fn usage_line(text: &str) -> String {
    let mut line = String::new();
    for l in text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
    {
        let l = l.strip_prefix("error: ").unwrap_or(l);
        if !line.is_empty() {
            line.push_str(if l.starts_with("tip:") {
                "; "
            } else if line.ends_with(':') || l.starts_with('[') {
                " "
            } else {
                ", "
            });
        }
        line.push_str(l);
    }
    if line.is_empty() {
        "invalid arguments".into()
    } else {
        line
    }
}
