//! Feature taps: where in a network features are read for k* and `semcon
//! features` (`logits`, `penultimate`, and per family: a ResNet's
//! `layer1..4`, a ConvNeXt's or EfficientNet's `stage1..N`, each pooled, a
//! ViT's `block1..N`, the class token after each encoder block).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where to read features from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tap {
    Logits,
    /// After global average pooling (the input of `fc`).
    Penultimate,
    /// Output of a ResNet's `layer1..4`, globally average-pooled.
    Layer(u8),
    /// Output of stage 1..N of a ConvNeXt or EfficientNet, pooled.
    Stage(u8),
    /// The class token after encoder block 1..N of a ViT.
    Block(u8),
}

impl std::str::FromStr for Tap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let numbered = |prefix: &str| {
            s.strip_prefix(prefix)
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|&n| n >= 1)
        };
        if let Some(n) = numbered("layer") {
            return Ok(Tap::Layer(n));
        }
        if let Some(n) = numbered("stage") {
            return Ok(Tap::Stage(n));
        }
        if let Some(n) = numbered("block") {
            return Ok(Tap::Block(n));
        }
        match s {
            "logits" => Ok(Tap::Logits),
            "penultimate" | "avgpool" => Ok(Tap::Penultimate),
            _ => Err(crate::invalid!(
                "unknown layer '{s}' (available: logits, penultimate, layerN for a ResNet, \
                 stageN for a ConvNeXt or EfficientNet, blockN for a ViT)"
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
            Tap::Stage(i) => write!(f, "stage{i}"),
            Tap::Block(i) => write!(f, "block{i}"),
        }
    }
}

impl Tap {
    /// A ResNet's taps (other families list theirs: `Model::taps`).
    pub const ALL: [Tap; 6] = [
        Tap::Logits,
        Tap::Penultimate,
        Tap::Layer(1),
        Tap::Layer(2),
        Tap::Layer(3),
        Tap::Layer(4),
    ];
}
