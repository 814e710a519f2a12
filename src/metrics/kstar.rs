//! TEMPORARY compile stub (replaced by the kstar branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Metric {
    Euclidean,
    Cityblock,
    Chebyshev,
    Cosine,
}
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassStats {
    pub class: u32,
    pub name: String,
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub skew: Option<f64>,
    pub pattern: Option<String>,
    pub histogram: super::Histogram,
}
#[derive(Clone, Debug, serde::Serialize)]
pub struct KstarReport {
    pub layer: String,
    pub metric: String,
    pub classes: Vec<ClassStats>,
}
pub fn table(_r: &KstarReport) -> String { String::new() }
impl std::str::FromStr for Metric { type Err = crate::Error; fn from_str(_s: &str) -> crate::Result<Self> { Ok(Metric::Euclidean) } }
