//! Explanations of a model's decisions (the semantic-continuity paper's
//! §4.5) with Captum's semantics: per image, an attribution map for the raw
//! logit of a target class (the true label or the prediction) by saliency
//! (|gradient|), Integrated Gradients (zero baseline, Gauss–Legendre
//! nodes, with its convergence delta) or GradCAM (a convolutional stage's
//! activations weighted by their spatially averaged gradient, ReLU,
//! upsampled to the image by nearest neighbour). Gradients come from
//! candle's graph, so every model family gets every method.

pub mod lime;
pub mod quadrature;
pub mod scores;
pub mod slic;

use crate::model::{Model, Tap};
use crate::Result;
use candle_core::{DType, Device, Tensor, D};
use serde::Serialize;

/// An explanation method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// |d logit / d x| per channel (Captum `Saliency(abs=True)`).
    Saliency,
    /// Integrated Gradients from a black image (Captum
    /// `IntegratedGradients`, `method="gausslegendre"`), times (x - 0).
    Ig,
    /// GradCAM at a convolutional stage (Captum `LayerGradCam`,
    /// `relu_attributions=True`), upsampled by nearest neighbour.
    Gradcam,
    /// LIME over superpixels (a grid up to 64 px, SLIC beyond; the `lime` package's sampling,
    /// kernel and weighted ridge regression), seeded.
    Lime,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::Ig => "ig",
            Method::Gradcam => "gradcam",
            Method::Lime => "lime",
        }
    }

    /// The name a figure or panel shows.
    pub fn title(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::Ig => "Integrated Gradients",
            Method::Gradcam => "GradCAM",
            Method::Lime => "LIME",
        }
    }

    /// Whether [`heat_maps`] keeps the sign (Integrated Gradients) rather
    /// than showing magnitudes.
    pub fn signed(self) -> bool {
        self == Method::Ig
    }

    pub const ALL: [Method; 4] = [Method::Saliency, Method::Ig, Method::Gradcam, Method::Lime];
}

/// Which class is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The true label.
    Label,
    /// The model's prediction.
    Pred,
}

/// How a method runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Options {
    /// Integrated Gradients' steps (Captum's default 50).
    pub steps: usize,
    /// GradCAM's layer; the model's last convolutional stage when `None`.
    pub layer: Option<Tap>,
    /// LIME's samples, kernel width and seed.
    pub lime: lime::LimeConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            steps: 50,
            layer: None,
            lime: lime::LimeConfig::default(),
        }
    }
}

/// One model's explanations of a batch.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// `[N, C, H, W]` (saliency, IG) or `[N, 1, H, W]` (GradCAM, LIME), f32, CPU.
    pub attr: Tensor,
    /// GradCAM before upsampling, `[N, 1, h, w]`.
    pub coarse: Option<Tensor>,
    /// The class explained per sample.
    pub targets: Vec<u32>,
    /// The model's prediction per sample.
    pub preds: Vec<u32>,
    /// The explained logit per sample.
    pub logit: Vec<f32>,
    /// Integrated Gradients' convergence delta per sample: the sum of the
    /// attributions minus (f(x) - f(baseline)).
    pub delta: Option<Vec<f32>>,
    /// GradCAM's layer.
    pub layer: Option<Tap>,
}

/// The last convolutional stage of `m` (GradCAM's default layer), or an
/// error naming why there is none (a ViT's taps are token sequences).
pub fn default_layer(m: &Model) -> Result<Tap> {
    m.taps()
        .into_iter()
        .rfind(|t| matches!(t, Tap::Layer(_) | Tap::Stage(_)))
        .ok_or_else(|| {
            crate::invalid!(
                "GradCAM needs a convolutional stage; model {} ({}) has none (its layers are {}): \
                 use saliency or ig",
                m.name,
                m.arch_name(),
                m.taps()
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The class each sample's explanation is for: its label, or `m`'s
/// prediction (`preds`).
pub fn targets(m: &Model, which: Target, labels: &[u32], preds: &[u32]) -> Result<Vec<u32>> {
    let t = match which {
        Target::Label => labels.to_vec(),
        Target::Pred => preds.to_vec(),
    };
    if let Some((i, l)) = t
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= m.num_classes())
    {
        return Err(crate::invalid!(
            "label {l} of sample {i} does not fit model {} with {} classes",
            m.name,
            m.num_classes()
        ));
    }
    Ok(t)
}

/// Explains images `x` (`[N, C, H, W]` in [0,1], on the model's device) for
/// the classes `targets` by `method`.
pub fn explain(
    m: &Model,
    x: &Tensor,
    targets: &[u32],
    method: Method,
    opts: &Options,
) -> Result<Explanation> {
    let preds = crate::metrics::accuracy::predictions(&m.logits(x)?)?;
    let mut e = Explanation {
        attr: Tensor::zeros(1, DType::F32, &Device::Cpu)?,
        coarse: None,
        targets: targets.to_vec(),
        preds,
        logit: Vec::new(),
        delta: None,
        layer: None,
    };
    match method {
        Method::Saliency => {
            let (logit, g) = m.target_logit_grad(x, targets)?;
            e.attr = g.abs()?;
            e.logit = logit;
        }
        Method::Ig => {
            let (attr, logit, delta) = integrated_gradients(m, x, targets, opts.steps)?;
            e.attr = attr;
            e.logit = logit;
            e.delta = Some(delta);
        }
        Method::Gradcam => {
            let layer = match opts.layer {
                Some(t) => t,
                None => default_layer(m)?,
            };
            let (coarse, logit) = gradcam(m, x, targets, layer)?;
            let (h, w) = (x.dim(2)?, x.dim(3)?);
            e.attr = upsample_nearest(&coarse, h, w)?;
            e.coarse = Some(coarse.to_device(&Device::Cpu)?);
            e.logit = logit;
            e.layer = Some(layer);
        }
        Method::Lime => {
            e.attr = lime::lime(m, x, targets, &opts.lime)?;
            e.logit = m.target_logit_grad(x, targets)?.0;
        }
    }
    e.attr = e.attr.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    Ok(e)
}

/// Per sample, what a heat map of `attr` (`[N, C, H, W]`) shows, `H x W`:
/// saliency's magnitudes summed over the channels, Integrated Gradients
/// summed over the channels with their sign (as Captum's
/// `visualize_image_attr(sign="all")`; [`Method::signed`]), GradCAM as it
/// is (>= 0), LIME's positive coefficients only (the superpixels that speak
/// for the class, as lime's `positive_only`).
pub fn heat_maps(attr: &Tensor, method: Method) -> Result<Vec<Vec<f32>>> {
    let (n, c, h, w) = attr.dims4()?;
    let v = attr.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let hw = h * w;
    Ok((0..n)
        .map(|i| {
            (0..hw)
                .map(|p| {
                    let vals = (0..c).map(|ch| v[(i * c + ch) * hw + p]);
                    match method {
                        Method::Lime => vals.sum::<f32>().max(0.0),
                        Method::Ig => vals.sum(),
                        Method::Saliency | Method::Gradcam => vals.map(f32::abs).sum(),
                    }
                })
                .collect()
        })
        .collect())
}

/// Integrated Gradients from the zero baseline as Captum computes it with
/// `method="gausslegendre"`: the gradients at `alpha_k * x` weighted by
/// `w_k / 2` (alpha_k = (1 + t_k) / 2 for the Gauss–Legendre nodes t_k and
/// weights w_k), summed, times x. Returns the attributions, the target
/// logits f(x) and the convergence deltas.
pub fn integrated_gradients(
    m: &Model,
    x: &Tensor,
    targets: &[u32],
    steps: usize,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    if steps == 0 {
        return Err(crate::invalid!(
            "Integrated Gradients needs at least one step"
        ));
    }
    let (nodes, weights) = quadrature::gauss_legendre(steps);
    let mut total: Option<Tensor> = None;
    for (t, w) in nodes.iter().zip(&weights) {
        let alpha = (0.5 * (1.0 + t)) as f32;
        let step = (0.5 * w) as f32;
        let (_, g) = m.target_logit_grad(&(x * alpha as f64)?, targets)?;
        let g = (g * step as f64)?;
        total = Some(match total {
            None => g,
            Some(s) => (s + g)?,
        });
    }
    let attr = (total.expect("at least one step") * x)?;
    // f(x) and f(baseline) for the delta: forward passes only, as Captum.
    let pick = |x: &Tensor| -> Result<Vec<f32>> {
        let lg = m.logits(x)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        Ok(lg
            .iter()
            .zip(targets)
            .map(|(r, &t)| r[t as usize])
            .collect())
    };
    let fx = pick(x)?;
    let f0 = pick(&x.zeros_like()?)?;
    let sums = attr.flatten_from(1)?.sum(D::Minus1)?.to_vec1::<f32>()?;
    let delta = sums
        .iter()
        .zip(fx.iter().zip(&f0))
        .map(|(s, (a, b))| s - (a - b))
        .collect();
    Ok((attr, fx, delta))
}

/// GradCAM at `layer` as Captum's `LayerGradCam` (`relu_attributions=True`):
/// relu(sum_k mean_ij(dy/dA_kij) * A_k), `[N, 1, h, w]`, with the target logits.
pub fn gradcam(m: &Model, x: &Tensor, targets: &[u32], layer: Tap) -> Result<(Tensor, Vec<f32>)> {
    let (a, g, logit) = m.maps_and_grad(x, layer, targets)?;
    let weights = g.mean_keepdim(3)?.mean_keepdim(2)?;
    let cam = a.broadcast_mul(&weights)?.sum_keepdim(1)?.relu()?;
    Ok((cam.to_dtype(DType::F32)?, logit))
}

/// Nearest-neighbour upsampling as `torch.nn.functional.interpolate(mode=
/// "nearest")` (Captum's `LayerAttribution.interpolate` default): output
/// pixel i reads input pixel floor(i * in / out).
pub fn upsample_nearest(t: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (_, _, ih, iw) = t.dims4()?;
    let rows: Vec<u32> = (0..h).map(|i| nearest(i, ih, h)).collect();
    let cols: Vec<u32> = (0..w).map(|j| nearest(j, iw, w)).collect();
    let dev = t.device();
    let t = t.index_select(&Tensor::new(rows, dev)?, 2)?;
    Ok(t.index_select(&Tensor::new(cols, dev)?, 3)?)
}

/// PyTorch's nearest source index: floor(dst * (in / out)) in float32,
/// clamped.
fn nearest(dst: usize, inp: usize, out: usize) -> u32 {
    let scale = inp as f32 / out as f32;
    ((dst as f32 * scale).floor() as usize).min(inp - 1) as u32
}
