//! TEMPORARY compile stub (replaced by the perturb branch).
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
    pub const COLOUR: [Kind; 4] = [
        Kind::Brightness,
        Kind::Contrast,
        Kind::Saturation,
        Kind::Hue,
    ];
    pub const PROBES: [Kind; 3] = [Kind::ChannelShift, Kind::CenterShuffle, Kind::Puzzle];
    pub fn name(self) -> &'static str {
        "x"
    }
    pub fn levels(self) -> usize {
        4
    }
    pub fn param(self, level: usize, _side: usize) -> f64 {
        level as f64
    }
    pub fn param_label(self, level: usize, _side: usize) -> String {
        format!("{level}")
    }
}
impl std::str::FromStr for Kind {
    type Err = crate::Error;
    fn from_str(_s: &str) -> crate::Result<Self> {
        Ok(Kind::Hue)
    }
}
pub fn apply(
    _kind: Kind,
    _level: usize,
    x: &[f32],
    _shape: (usize, usize, usize, usize),
    _seed: u64,
) -> crate::Result<Vec<f32>> {
    Ok(x.to_vec())
}
pub fn apply_value(
    _kind: Kind,
    _value: f64,
    x: &[f32],
    _shape: (usize, usize, usize, usize),
    _seed: u64,
) -> crate::Result<Vec<f32>> {
    Ok(x.to_vec())
}
pub fn parse_selection(_s: &str) -> crate::Result<Vec<(Kind, usize)>> {
    Ok(vec![])
}
