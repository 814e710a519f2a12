//! The panels of the screen, one file each; every one draws only what is in
//! the [`App`](super::app::App) (where they go is [`super::ui`]'s layout):
//!
//! * [`header`]: the top line (dataset, samples, models, demo badge),
//! * [`perturbations`]: the list of perturbations and levels,
//! * [`accuracy`], [`ds`], [`pgd`]: the model × level (or ε) tables,
//! * [`kstar`]: k* patterns per model and the selected model's classes,
//! * [`sample`]: one sample before and after the perturbation,
//! * [`status`]: the status line, [`help`]: the help overlay,
//! * [`common`]: borders, styles, number formats, column widths,
//! * [`table`]: the per-model numbers of the current view, which
//!   [`export`](super::export) writes and charts too.

pub mod accuracy;
pub mod common;
pub mod ds;
pub mod header;
pub mod help;
pub mod kstar;
pub mod perturbations;
pub mod pgd;
pub mod sample;
pub mod status;
pub mod table;
