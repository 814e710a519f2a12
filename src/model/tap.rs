//! Feature taps: where in a network features are read for k* and `semcon
//! features` (`logits`, `penultimate`, each stage's pooled output).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where to read features from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tap {
    Logits,
    /// After global average pooling (the input of `fc`).
    Penultimate,
    /// Output of stage 1..4, globally average-pooled.
    Layer(u8),
}

impl std::str::FromStr for Tap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logits" => Ok(Tap::Logits),
            "penultimate" | "avgpool" => Ok(Tap::Penultimate),
            "layer1" => Ok(Tap::Layer(1)),
            "layer2" => Ok(Tap::Layer(2)),
            "layer3" => Ok(Tap::Layer(3)),
            "layer4" => Ok(Tap::Layer(4)),
            _ => Err(crate::invalid!(
                "unknown layer '{s}' (available: logits, penultimate, layer1, layer2, layer3, layer4)"
            )),
        }
    }
}

impl std::fmt::Display for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tap::Logits => write!(f, "logits"),
            Tap::Penultimate => write!(f, "penultimate"),
            Tap::Layer(i) => write!(f, "layer{i}"),
        }
    }
}

impl Tap {
    pub const ALL: [Tap; 6] = [
        Tap::Logits,
        Tap::Penultimate,
        Tap::Layer(1),
        Tap::Layer(2),
        Tap::Layer(3),
        Tap::Layer(4),
    ];
}
