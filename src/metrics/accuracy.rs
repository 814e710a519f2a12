//! Predictions and accuracy.

use candle_core::{Result, Tensor};

/// Arg-max over the last dimension of `[n, classes]` logits.
pub fn predictions(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()
}

/// Fraction of `pred` equal to `labels` (0 for an empty set).
pub fn accuracy(pred: &[u32], labels: &[u32]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    let ok = pred.iter().zip(labels).filter(|(p, y)| p == y).count();
    ok as f64 / pred.len() as f64
}
