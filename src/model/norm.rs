//! Normalisation values (per-channel mean and std) of a model's input: where
//! a value comes from is named in its errors. Normalisation is part of the
//! model; perturbations and attacks work in [0,1] pixel space.

use crate::error::Result;

/// Per-channel normalisation values for a model of `c` input channels (one
/// value is repeated), finite and, for a std, positive. `what` names where
/// they came from ("--mean", or the sidecar field) in errors.
pub fn norm_values(v: &[f32], c: usize, what: &str, positive: bool) -> Result<Vec<f32>> {
    let v = match v.len() {
        1 => vec![v[0]; c],
        n if n == c => v.to_vec(),
        n => {
            return Err(crate::invalid!(
                "{what} has {n} values but the model takes {c} input channels"
            ))
        }
    };
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(crate::invalid!("{what} values must be finite, got {x}"));
    }
    if let Some(x) = v.iter().find(|x| positive && **x <= 0.0) {
        return Err(crate::invalid!("{what} values must be positive, got {x}"));
    }
    Ok(v)
}
