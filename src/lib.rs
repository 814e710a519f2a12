//! semcon: semantic continuity and latent-space structure (k*) of image
//! classifiers. A library plus a thin binary (`src/main.rs` calls
//! [`cli::main`]). Data flows one way: [`data`] -> [`perturb`] -> [`model`]
//! -> [`metrics`] -> [`eval`] -> [`engine`] -> [`tui`] / [`report`];
//! [`session`] resolves what a run works on for every front end, [`cli`]
//! holds one file per command. docs/ARCHITECTURE.md is the map.

pub mod cli;
pub mod data;
pub mod device;
pub mod engine;
pub mod error;
pub mod eval;
pub mod explain;
pub mod figure;
pub mod fuzz;
pub mod metrics;
pub mod model;
pub mod perturb;
pub mod report;
pub mod session;
pub mod train;
pub mod tui;

pub use error::{Error, Result};
