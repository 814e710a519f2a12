//! The perturbation types ([`Kind`]): names, levels and their parameters
//! (paper Table 1, the probes, the k* paper's transforms), labels for
//! panels, and the `--perturb NAME[:LEVELS]` selection syntax.

use super::common::round_half_even;
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A perturbation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Kind {
    Brightness,
    Contrast,
    Saturation,
    Hue,
    ChannelShift,
    CenterShuffle,
    Puzzle,
    Noise,
    Rotate,
    CropResize,
}

const BRIGHTNESS: [f64; 5] = [0.0, 16.0, 32.0, 48.0, 64.0]; // on the 0..255 scale
const CONTRAST: [f64; 5] = [1.0, 1.25, 1.5, 1.75, 2.0];
const SATURATION: [f64; 5] = [1.0, 1.25, 1.5, 1.75, 2.0];
const HUE: [f64; 5] = [0.0, 0.1, 0.2, 0.3, 0.4];
const SHIFT_DIV: [usize; 5] = [0, 32, 16, 8, 4];
const CENTER: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];
const PUZZLE: [usize; 5] = [1, 2, 3, 4, 5];
const NOISE: [f64; 5] = [0.0, 0.05, 0.1, 0.2, 0.4];
const ROTATE: [f64; 5] = [0.0, 30.0, 60.0, 90.0, 180.0];
const CROP_FRAC: [f64; 5] = [1.0, 7.0 / 8.0, 3.0 / 4.0, 1.0 / 2.0, 1.0 / 4.0];

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Brightness,
        Kind::Contrast,
        Kind::Saturation,
        Kind::Hue,
        Kind::ChannelShift,
        Kind::CenterShuffle,
        Kind::Puzzle,
        Kind::Noise,
        Kind::Rotate,
        Kind::CropResize,
    ];
    /// The non-semantic colour perturbations of the paper's Table 1.
    pub const COLOUR: [Kind; 4] = [
        Kind::Brightness,
        Kind::Contrast,
        Kind::Saturation,
        Kind::Hue,
    ];
    /// The semantic-destroying probes (paper §4.3).
    pub const PROBES: [Kind; 3] = [Kind::ChannelShift, Kind::CenterShuffle, Kind::Puzzle];
    /// The input transformations of the k* paper (§IV-F).
    pub const KSTAR: [Kind; 3] = [Kind::Noise, Kind::Rotate, Kind::CropResize];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Brightness => "brightness",
            Kind::Contrast => "contrast",
            Kind::Saturation => "saturation",
            Kind::Hue => "hue",
            Kind::ChannelShift => "channel-shift",
            Kind::CenterShuffle => "center-shuffle",
            Kind::Puzzle => "puzzle",
            Kind::Noise => "noise",
            Kind::Rotate => "rotate",
            Kind::CropResize => "crop-resize",
        }
    }

    /// Number of non-identity levels (levels are `0..=levels()`, 0 = identity).
    pub fn levels(self) -> usize {
        4
    }

    /// Whether the perturbation draws random numbers (uses the seed).
    pub fn is_random(self) -> bool {
        matches!(self, Kind::CenterShuffle | Kind::Puzzle | Kind::Noise)
    }

    /// The value at `level` for images whose shorter side is `side`, in the
    /// units [`apply_value`] takes: brightness offset (e.g. 32/255), contrast /
    /// saturation factor, hue shift, channel shift N in pixels, centre area
    /// fraction, puzzle k, noise sigma, rotation degrees, crop side in pixels.
    /// Levels above [`Kind::levels`] are clamped to the last level.
    pub fn param(self, level: usize, side: usize) -> f64 {
        let l = level.min(self.levels());
        match self {
            Kind::Brightness => BRIGHTNESS[l] / 255.0,
            Kind::Contrast => CONTRAST[l],
            Kind::Saturation => SATURATION[l],
            Kind::Hue => HUE[l],
            Kind::ChannelShift => {
                if l == 0 {
                    0.0
                } else {
                    (side / SHIFT_DIV[l]).max(1) as f64
                }
            }
            Kind::CenterShuffle => CENTER[l],
            Kind::Puzzle => PUZZLE[l] as f64,
            Kind::Noise => NOISE[l],
            Kind::Rotate => ROTATE[l],
            Kind::CropResize => {
                if l == 0 {
                    side as f64
                } else {
                    (round_half_even(CROP_FRAC[l] * side as f64) as usize).max(1) as f64
                }
            }
        }
    }

    /// A short human label of the level, e.g. "hue 0.2", "brightness +32/255",
    /// "shift 4px", "puzzle 3x3"; "<name> 0 (identity)" at level 0.
    pub fn param_label(self, level: usize, side: usize) -> String {
        if level == 0 {
            return format!("{} 0 (identity)", self.name());
        }
        let l = level.min(self.levels());
        let v = self.param(l, side);
        match self {
            Kind::Brightness => format!("brightness +{}/255", BRIGHTNESS[l]),
            Kind::Contrast => format!("contrast {v}"),
            Kind::Saturation => format!("saturation {v}"),
            Kind::Hue => format!("hue {v}"),
            Kind::ChannelShift => format!("shift {v}px"),
            Kind::CenterShuffle => format!("center {}%", (v * 100.0).round()),
            Kind::Puzzle => format!("puzzle {v}x{v}"),
            Kind::Noise => format!("noise sigma {v}"),
            Kind::Rotate => format!("rotate {v}°"),
            Kind::CropResize => format!("crop {v}/{side}px"),
        }
    }

    /// The value at which the perturbation is the identity.
    pub(super) fn identity_value(self, side: usize) -> f64 {
        self.param(0, side)
    }

    fn names() -> String {
        Kind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Kind> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match norm.as_str() {
            "channel-translation" | "channelshift" | "shift" => "channel-shift",
            "center-randomization" | "centre-shuffle" | "center" | "centre" => "center-shuffle",
            "sliding-puzzle" => "puzzle",
            "gaussian-noise" => "noise",
            "rotation" => "rotate",
            "crop" => "crop-resize",
            other => other,
        };
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == alias)
            .ok_or_else(|| crate::invalid!("unknown perturbation '{s}' (valid: {})", Kind::names()))
    }
}

/// Parses the CLI form `NAME[:LEVELS]`: `hue` (levels 1..4), `hue:1,2`,
/// `hue:1-3`, groups `all` (colour + probes), `colour`, `probes`, `kstar`
/// (noise, rotate, crop-resize), several joined by `+` or `;`
/// (`hue:2+puzzle:1`). Level 0 (identity) may be named explicitly.
/// Duplicates are dropped, order is kept.
pub fn parse_selection(s: &str) -> Result<Vec<(Kind, usize)>> {
    let mut out: Vec<(Kind, usize)> = Vec::new();
    let parts: Vec<&str> = s
        .split(['+', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(crate::invalid!(
            "empty perturbation selection (expected NAME[:LEVELS], NAME one of all, colour, probes, kstar, {})",
            Kind::names()
        ));
    }
    for part in parts {
        let (name, levels) = match part.split_once(':') {
            Some((n, l)) => (n.trim(), Some(l.trim())),
            None => (part, None),
        };
        let kinds: Vec<Kind> = match name.to_ascii_lowercase().as_str() {
            "all" => Kind::COLOUR.iter().chain(Kind::PROBES.iter()).copied().collect(),
            "colour" | "color" => Kind::COLOUR.to_vec(),
            "probes" => Kind::PROBES.to_vec(),
            "kstar" | "k*" => Kind::KSTAR.to_vec(),
            _ => vec![name.parse::<Kind>().map_err(|_| {
                crate::invalid!(
                    "unknown perturbation '{name}' in '{s}' (valid: all, colour, probes, kstar, {})",
                    Kind::names()
                )
            })?],
        };
        let max = kinds.iter().map(|k| k.levels()).min().unwrap_or(4);
        let lv: Vec<usize> = match levels {
            None => (1..=max).collect(),
            Some(l) => parse_levels(l, max).map_err(|e| crate::invalid!("{e} in '{part}'"))?,
        };
        for k in kinds {
            for &l in &lv {
                if !out.contains(&(k, l)) {
                    out.push((k, l));
                }
            }
        }
    }
    Ok(out)
}

fn parse_levels(s: &str, max: usize) -> Result<Vec<usize>> {
    let bad =
        |t: &str| crate::invalid!("invalid level '{t}' (valid levels: 0..{max}, e.g. 1,2 or 1-3)");
    let mut out = Vec::new();
    for t in s.split(',').map(str::trim) {
        let (a, b) = match t.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (t, t),
        };
        let a: usize = a.parse().map_err(|_| bad(t))?;
        let b: usize = b.parse().map_err(|_| bad(t))?;
        if a > b || b > max {
            return Err(bad(t));
        }
        for l in a..=b {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    Ok(out)
}
