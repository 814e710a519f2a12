//! semcon: semantic continuity and latent-space structure (k*) of image
//! classifiers. A library (datasets, models, perturbations, metrics, engine,
//! training, TUI) plus a thin binary (`cli`).

pub mod cli;
pub mod cli_eval;
pub mod cli_train;
pub mod data;
pub mod device;
pub mod engine;
pub mod error;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod perturb;
pub mod train;
pub mod tui;

pub use error::{Error, Result};
