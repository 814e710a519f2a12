//! Perturbations (SPEC.md): pure functions image batch -> image batch.
