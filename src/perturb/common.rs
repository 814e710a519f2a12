//! Helpers every perturbation shares: the shape check of an image batch and
//! round-half-to-even (Python's `round`, which torchvision's crops use).

use crate::error::Result;

/// Checks that `x` holds `n*c*h*w` values.
pub fn check_shape(x: &[f32], shape: (usize, usize, usize, usize)) -> Result<()> {
    let (n, c, h, w) = shape;
    if x.len() != n * c * h * w {
        return Err(crate::invalid!(
            "image batch of shape ({n}, {c}, {h}, {w}) needs {} values, got {}",
            n * c * h * w,
            x.len()
        ));
    }
    if n > 0 && (c == 0 || h == 0 || w == 0) {
        return Err(crate::invalid!(
            "image batch of shape ({n}, {c}, {h}, {w}) has empty images"
        ));
    }
    Ok(())
}

/// Python's `round` (half to even).
pub fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}
