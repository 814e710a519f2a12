//! Command line: argument parsing and the headless commands. Each command is a
//! thin layer over the library; errors are printed as one line, exit code 1.

pub use crate::cli_eval::{AttackArgs, EvalArgs};
pub use crate::cli_train::TrainArgs;
use crate::data::{self, DatasetSpec, ImageSet, LoadOptions, Split};
use crate::eval;
use crate::model::{self, Model, ModelOptions, Tap};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "semcon",
    version,
    about = "Semantic continuity and k* explorer for image classifiers",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a command: the explorer, with `semcon explore`'s options
    /// (`semcon --demo`, `semcon -c A.pth -c B.pth -d DATA`).
    #[command(flatten)]
    pub explore: ExploreArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write features (and labels) of a model at a layer to an .npz file.
    Features(FeaturesArgs),
    /// Evaluate checkpoints: clean accuracy, perturbations (accuracy, DS, discontinuity), PGD, k*.
    Eval(EvalArgs),
    /// PGD-attack a dataset and write the adversarial images.
    Attack(AttackArgs),
    /// Train a model variant (standard, continuity, adv, adv-continuity).
    Train(TrainArgs),
    /// Write perturbed images (.npy, float32 NCHW) or a before/after grid (.png).
    Perturb(PerturbArgs),
    /// Open the terminal explorer (the default without a command).
    ///
    /// Without --checkpoint it opens every checkpoints/*.safetensors (standard,
    /// continuity, adv, adv-continuity first, up to 4 side by side); without
    /// --dataset the builtin Fashion-MNIST test set (its colour split when the
    /// models were trained on colour data); without --samples a seeded subset
    /// of 2000 samples (--samples 0: all). Press ? inside for the keys.
    Explore(ExploreArgs),
    /// k* distribution of features (.npz from `semcon features`, or .npy with --labels).
    Kstar(KstarArgs),
    /// Time a random-init ResNet on random inputs (forward, and forward+backward w.r.t. the input).
    Bench(BenchArgs),
}

/// Flags that describe the model(s).
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// Checkpoint (.safetensors, .pth, .pt); may be repeated where several models make sense.
    #[arg(long = "checkpoint", short = 'c')]
    pub checkpoints: Vec<PathBuf>,
    /// Per-channel mean of the model's normalisation, e.g. 0.485,0.456,0.406.
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel std of the model's normalisation.
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Input size HxW (or one number) images are resized to (image folders).
    #[arg(long)]
    pub input_size: Option<String>,
    /// Class names, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub class_names: Option<Vec<String>>,
    /// auto, cpu, cuda or cuda:N [default: auto: the GPU when this build has
    /// CUDA and one answers, else the CPU].
    #[arg(long)]
    pub device: Option<String>,
}

impl ModelArgs {
    pub fn options(&self) -> Result<ModelOptions> {
        let input_size = match &self.input_size {
            None => None,
            Some(s) => Some(parse_size(s)?),
        };
        Ok(ModelOptions {
            mean: self.mean.clone(),
            std: self.std.clone(),
            input_size,
            class_names: self.class_names.clone(),
        })
    }
    pub fn device(&self) -> Result<Device> {
        Ok(crate::device::select_arg(self.device.as_deref())?)
    }
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parts: Vec<&str> = s.split(['x', 'X', ',']).collect();
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .with_context(|| format!("invalid --input-size '{s}' (expected H or HxW)"))
    };
    match parts.as_slice() {
        [a] => Ok((p(a)?, p(a)?)),
        [a, b] => Ok((p(a)?, p(b)?)),
        _ => bail!("invalid --input-size '{s}' (expected H or HxW)"),
    }
}

/// Flags that select the data.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset: builtin:fashion-mnist, an idx/CIFAR directory or file, an image folder, or .npz;
    /// add :colour for the colour-shift split.
    #[arg(long, short = 'd')]
    pub dataset: Option<String>,
    /// Which split of a dataset that has both (idx/CIFAR directories, image
    /// folders with train/ and test/, .npz with x_train/x_test) [default: test;
    /// train for `semcon train`].
    #[arg(long, value_enum)]
    pub split: Option<Split>,
    /// Use a seeded random subset of N samples.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Seed for --samples and every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip non-image files in image folders (with a warning) instead of failing.
    #[arg(long)]
    pub skip_bad_images: bool,
}

impl DataArgs {
    pub fn load(&self, resize: Option<(usize, usize)>) -> Result<ImageSet> {
        let spec: DatasetSpec = self
            .dataset
            .as_deref()
            .unwrap_or("builtin:fashion-mnist")
            .parse()?;
        let opts = LoadOptions {
            split: self.split.unwrap_or(Split::Test),
            resize,
            skip_bad_images: self.skip_bad_images,
        };
        let set = data::load(&spec, &opts)?;
        if set.is_empty() {
            bail!("dataset {spec} is empty");
        }
        self.subset(set)
    }

    /// `--samples`: a seeded subset of `set` (all of it without the flag).
    pub fn subset(&self, set: ImageSet) -> Result<ImageSet> {
        Ok(match self.samples {
            Some(0) => bail!("--samples must be at least 1"),
            Some(n) => set.subset(n, self.seed),
            None => set,
        })
    }
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Float32 NCHW images in [0,1] (.npy) instead of a dataset.
    #[arg(long, conflicts_with = "dataset")]
    pub input: Option<PathBuf>,
    /// logits, penultimate, layer1..layer4.
    #[arg(long, default_value = "logits")]
    pub layer: String,
    /// Output .npz: features, labels and class_names (with a dataset) and
    /// layer; the names are numpy string arrays.
    #[arg(long)]
    pub out: PathBuf,
    /// Images per forward pass (a device out of memory halves it and retries).
    #[arg(long, default_value_t = 256, value_parser = crate::cli::parse_batch)]
    pub batch: usize,
}

/// Flags of the explorer. Without --checkpoint it opens every
/// checkpoints/*.safetensors (standard, continuity, adv, adv-continuity first);
/// without --samples it evaluates a seeded subset of 2000 samples (0: all).
#[derive(Args, Debug)]
pub struct ExploreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per batch (default: 64 on the CPU, 512 on a GPU; small CPU batches
    /// keep the panels updating often).
    #[arg(long, value_parser = parse_batch)]
    pub batch: Option<usize>,
    /// PGD eps values (step 2/255, 10 iterations).
    #[arg(long, value_delimiter = ',', value_parser = crate::cli_eval::parse_frac,
          default_value = "2/255,4/255,8/255")]
    pub pgd: Vec<f32>,
    /// Cycle through perturbations and levels on a timer (projector mode).
    #[arg(long)]
    pub demo: bool,
    /// Seconds per step of --demo.
    #[arg(long, default_value_t = 4.0)]
    pub demo_secs: f64,
    /// Where `e` writes exports.
    #[arg(long, default_value = "semcon-export")]
    pub export_dir: PathBuf,
}

fn cmd_explore(a: &ExploreArgs) -> Result<()> {
    crate::tui::explore(a)
}

#[derive(Args, Debug)]
pub struct KstarArgs {
    /// Features: .npz with arrays `features` and `labels`, or a float32/float64 .npy.
    #[arg(long)]
    pub features: PathBuf,
    /// Integer labels (.npy); required with a .npy features file.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// euclidean, cityblock, chebyshev or cosine.
    #[arg(long, default_value = "euclidean")]
    pub metric: String,
    /// Write the per-sample k* integers (int64 .npy).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// json or table.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Layer name recorded in the report [default: the `layer` array of an
    /// .npz from `semcon features`, else none].
    #[arg(long)]
    pub layer: Option<String>,
    /// Class names, comma separated [default: the `class_names` array of an
    /// .npz from `semcon features`, else the label numbers].
    #[arg(long, value_delimiter = ',')]
    pub class_names: Option<Vec<String>>,
    /// Pattern A (fractured) when the skew is above this.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub fractured_above: f64,
    /// Pattern C (clustered) when the skew is below this.
    #[arg(long, default_value_t = -0.5, allow_negative_numbers = true)]
    pub clustered_below: f64,
    /// auto, cpu, cuda or cuda:N [default: auto: the GPU when this build has
    /// CUDA and one answers, else the CPU].
    #[arg(long)]
    pub device: Option<String>,
    /// Benchmarks: search N more times after the first and report the best
    /// time on stderr (the first run warms up the device).
    #[arg(long, default_value_t = 0, hide_short_help = true)]
    pub repeat: usize,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// resnet18, resnet34 or resnet50 (random init, cifar stem).
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    /// Stem width (64 = torchvision's full width).
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Output classes.
    #[arg(long, default_value_t = 100)]
    pub classes: usize,
    /// Input height and width.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Images per timed batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed iterations (their mean is reported).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// CPU threads (sets RAYON_NUM_THREADS and CANDLE_NUM_THREADS); default: candle's choice.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also time forward+backward w.r.t. the input (a PGD step).
    #[arg(long)]
    pub backward: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Loads the one model a command needs.
pub fn load_one_model(args: &ModelArgs, device: &Device) -> Result<Model> {
    let path = match args.checkpoints.as_slice() {
        [p] => p,
        [] => bail!("--checkpoint is required"),
        _ => bail!("this command takes one --checkpoint"),
    };
    let m = model::load(path, &args.options()?, device)?;
    if let Some(n) = m.norm_notice() {
        eprintln!("notice: {n}");
    }
    Ok(m)
}

/// Reads float32 NCHW images in [0,1] from a .npy file.
pub fn read_input_npy(p: &Path) -> Result<Tensor> {
    let t = crate::data::npyz::read_npy_file(p)?;
    if t.rank() != 4 {
        bail!(
            "{}: images must be float32 NCHW, got shape {:?}",
            p.display(),
            t.dims()
        );
    }
    if t.elem_count() == 0 {
        bail!("{}: holds no pixels (shape {:?})", p.display(), t.dims());
    }
    let t = t.to_dtype(DType::F32)?;
    let (lo, hi) = (
        t.min_all()?.to_scalar::<f32>()?,
        t.max_all()?.to_scalar::<f32>()?,
    );
    if !(lo >= 0.0 && hi <= 1.0) {
        bail!(
            "{}: images must be in [0,1], found values in [{lo}, {hi}]",
            p.display()
        );
    }
    Ok(t)
}

/// `--input` images ([`read_input_npy`]) as a set with unknown labels (0).
pub fn read_input_set(p: &Path) -> Result<ImageSet> {
    let t = read_input_npy(p)?;
    let (n, c, h, w) = t.dims4()?;
    Ok(ImageSet {
        name: p.display().to_string(),
        channels: c,
        height: h,
        width: w,
        data: t.flatten_all()?.to_vec1::<f32>()?,
        labels: vec![0; n],
        class_names: Vec::new(),
        norm: None,
    })
}

/// Checks an output path before any work is done, so that a long run does not
/// end in "cannot write": one of the extensions `exts` (any when empty) and
/// an existing parent directory.
pub fn check_out(out: &Path, exts: &[&str]) -> Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !exts.is_empty() && !exts.contains(&ext.as_str()) {
        let want: Vec<String> = exts.iter().map(|e| format!(".{e}")).collect();
        bail!(
            "--out {}: expected a {} file",
            out.display(),
            want.join(" or ")
        );
    }
    if out.is_dir() {
        bail!("--out {}: is a directory", out.display());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        bail!(
            "--out {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "--out {}: {} is not a directory",
            out.display(),
            dir.display()
        );
    }
    Ok(())
}

/// `--batch`: a whole number of at least 1.
pub fn parse_batch(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// Runs `f` over `x` in batches on `device` and concatenates the outputs (on
/// the CPU); a device out of memory halves the batch ([`eval::in_batches`]).
pub fn batched(
    x: &Tensor,
    batch: usize,
    device: &Device,
    f: impl Fn(&Tensor) -> crate::Result<Tensor>,
) -> Result<Tensor> {
    let outs = eval::in_batches(
        x.dim(0)?,
        batch,
        |s, e| {
            let xb = x.narrow(0, s, e - s)?.to_device(device)?;
            Ok(vec![f(&xb)?.to_device(&Device::Cpu)?])
        },
        |_, _, _| true,
    )?
    .unwrap_or_default();
    Ok(Tensor::cat(&outs, 0)?)
}

fn cmd_features(a: &FeaturesArgs) -> Result<()> {
    check_out(&a.out, &["npz"])?;
    let device = a.model.device()?;
    let m = load_one_model(&a.model, &device)?;
    let tap: Tap = a.layer.parse()?;
    let (x, labels, class_names) = match &a.input {
        Some(p) => {
            let set = a.data.subset(read_input_set(p)?)?;
            (set.batch(0, set.len(), &Device::Cpu)?, None, None)
        }
        None => {
            let set = a.data.load(m.input_size)?;
            set.check_labels(m.num_classes())?;
            if let Some(n) = eval::gray_notice(&set, std::slice::from_ref(&m)) {
                eprintln!("notice: {n}");
            }
            let x = set.batch(0, set.len(), &Device::Cpu)?;
            let y = Tensor::from_vec(
                set.labels.iter().map(|&v| v as i64).collect::<Vec<_>>(),
                set.len(),
                &Device::Cpu,
            )?;
            (x, Some(y), Some(set.class_names.clone()))
        }
    };
    let f = batched(&x, a.batch, &device, |xb| m.features(xb, tap))?;
    // The layer and the class names travel with the features, for `semcon
    // kstar` and for numpy (`f["layer"]`, `f["class_names"]`).
    use crate::data::npyz::NpyArray;
    let layer = [tap.to_string()];
    let mut arrays = vec![("features", NpyArray::Tensor(&f))];
    if let Some(y) = &labels {
        arrays.push(("labels", NpyArray::Tensor(y)));
    }
    arrays.push(("layer", NpyArray::Strings(&layer)));
    if let Some(names) = &class_names {
        arrays.push(("class_names", NpyArray::Strings(names)));
    }
    write_npz(&a.out, &arrays)?;
    eprintln!(
        "wrote {} ({} x {} features at {tap})",
        a.out.display(),
        f.dim(0)?,
        f.dim(1)?
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct PerturbArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Float32 NCHW images in [0,1] (.npy) instead of a dataset.
    #[arg(long, conflicts_with = "dataset")]
    pub input: Option<PathBuf>,
    /// brightness, contrast, saturation, hue, channel-shift, center-shuffle, puzzle, noise, rotate, crop-resize.
    #[arg(long)]
    pub perturb: String,
    /// Level 0..4 (0 = identity).
    #[arg(long)]
    pub level: usize,
    /// Output: .npy (perturbed images, float32 NCHW) or .png (originals on top, perturbed below, up to 16).
    #[arg(long)]
    pub out: PathBuf,
}

fn cmd_perturb(a: &PerturbArgs) -> Result<()> {
    let kind: crate::perturb::Kind = a.perturb.parse()?;
    check_out(&a.out, &["npy", "png"])?;
    let png = a
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let set = match &a.input {
        Some(p) => a.data.subset(read_input_set(p)?)?,
        None => a.data.load(None)?,
    };
    let shape = (set.len(), set.channels, set.height, set.width);
    let y = crate::perturb::apply(kind, a.level, &set.data, shape, a.data.seed)?;
    let label = kind.param_label(a.level, set.height.min(set.width));
    if png {
        let cols = set.len().min(16);
        let (c, h, w) = (set.channels, set.height, set.width);
        let scale = (96 / h.max(w)).max(1);
        let (cw, chh, gap) = (w * scale, h * scale, 2);
        let (gw, gh) = (cols * (cw + gap) + gap, 2 * (chh + gap) + gap);
        let mut img =
            image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
        for (row, data) in [&set.data, &y].into_iter().enumerate() {
            for i in 0..cols {
                let im = &data[i * c * h * w..(i + 1) * c * h * w];
                for py in 0..chh {
                    for px in 0..cw {
                        let (sy, sx) = (py / scale, px / scale);
                        let v = |ch: usize| {
                            (im[ch.min(c - 1) * h * w + sy * w + sx].clamp(0.0, 1.0) * 255.0)
                                .round() as u8
                        };
                        let (ox, oy) = (gap + i * (cw + gap) + px, gap + row * (chh + gap) + py);
                        img.put_pixel(ox as u32, oy as u32, image::Rgb([v(0), v(1), v(2)]));
                    }
                }
            }
        }
        img.save_with_format(&a.out, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", a.out.display()))?;
    } else {
        let t = Tensor::from_vec(y, shape, &Device::Cpu)?;
        t.write_npy(&a.out)
            .with_context(|| format!("cannot write {}", a.out.display()))?;
    }
    eprintln!("wrote {} ({} images, {label})", a.out.display(), set.len());
    Ok(())
}

fn cmd_kstar(a: &KstarArgs) -> Result<()> {
    use crate::metrics::kstar;
    let metric: kstar::Metric = a.metric.parse()?;
    let json = match a.format.as_str() {
        "json" => true,
        "table" => false,
        f => bail!("invalid --format '{f}' (expected json or table)"),
    };
    if let Some(out) = &a.out {
        check_out(out, &["npy"])?;
    }
    let device = crate::device::select_arg(a.device.as_deref())?;
    let f = kstar::read_features(&a.features, a.labels.as_deref())?;
    let class_names = a.class_names.clone().or_else(|| f.class_names.clone());
    if let Some(names) = &class_names {
        // Every label needs a name (the highest label may be absent from a subset).
        let k = f.labels.iter().max().map_or(0, |&m| m as usize + 1);
        if names.len() < k {
            bail!(
                "{} class names given but the labels go up to {} ({k} classes)",
                names.len(),
                k - 1
            );
        }
    }
    let t = std::time::Instant::now();
    let k = f.kstar(metric, &device)?;
    let mut secs = t.elapsed().as_secs_f64();
    let mut how = String::new();
    if a.repeat > 0 {
        secs = f64::INFINITY;
        for _ in 0..a.repeat {
            let t = std::time::Instant::now();
            f.kstar(metric, &device)?;
            secs = secs.min(t.elapsed().as_secs_f64());
        }
        how = format!(" (best of {} after a warm-up run)", a.repeat);
    }
    // The search alone (no file reading or device start-up), for benchmarks.
    eprintln!(
        "k* search: {} samples x {} features, {}, {}: {secs:.3} s{how}",
        f.len(),
        f.dim,
        metric.name(),
        crate::device::describe(&device),
    );
    let th = kstar::Thresholds {
        fractured: a.fractured_above,
        clustered: a.clustered_below,
    };
    let names = class_names.unwrap_or_default();
    let mut report = kstar::summarize(&k, &f.labels, &names, metric, th)?;
    report.layer = a
        .layer
        .clone()
        .or_else(|| f.layer.clone())
        .unwrap_or_default();
    if let Some(out) = &a.out {
        let v: Vec<i64> = k.iter().map(|&v| v as i64).collect();
        let t = Tensor::from_vec(v, k.len(), &Device::Cpu)?;
        write_atomically(out, |tmp| Ok(t.write_npy(tmp)?))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn cmd_bench(a: &BenchArgs) -> Result<()> {
    use model::resnet::{ResNet, ResNetConfig, Stem};
    use std::time::Instant;
    if a.width == 0 {
        bail!("--width must be at least 1");
    }
    if a.classes == 0 {
        bail!("--classes must be at least 1");
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(t) = a.threads {
        // Both must be set before the first candle op: candle's matmul (gemm) reads
        // RAYON_NUM_THREADS on each call, its barrier pool CANDLE_NUM_THREADS once.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", t.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    let threads = candle_core::utils::get_num_threads();
    let device = crate::device::select(&a.device)?;
    let cfg = ResNetConfig::named(&a.arch, Stem::Cifar, a.width, 3, a.classes)?;
    let vm = candle_nn::VarMap::new();
    ResNet::new(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &device),
    )?;
    // Frozen weights (no weight gradients), as for a loaded checkpoint under attack.
    let frozen = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let net = ResNet::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(frozen, DType::F32, &device),
    )?;
    let x = Tensor::rand(0f32, 1f32, (a.batch, 3, a.size, a.size), &device)?;
    let y = Tensor::from_vec(
        (0..a.batch as u32).map(|i| i % a.classes as u32).collect(),
        a.batch,
        &device,
    )?;
    // CPU seconds of this process (Linux; 0 elsewhere): shows the share of the cores it got.
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<f64> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        f.get(11)
            .zip(f.get(12))
            .map_or(0.0, |(u, s)| (u + s) / 100.0)
    };
    // (wall seconds, CPU seconds) per batch.
    let time = |f: &dyn Fn() -> Result<()>| -> Result<(f64, f64)> {
        for _ in 0..a.warmup {
            f()?;
        }
        let (t0, c0, n) = (Instant::now(), cpu(), a.iters.max(1) as f64);
        for _ in 0..a.iters.max(1) {
            f()?;
        }
        Ok((t0.elapsed().as_secs_f64() / n, (cpu() - c0) / n))
    };
    // What `eval`, `attack` and the TUI run: on the CPU the fused network,
    // on a GPU (cudnn builds) the cuDNN network, both built once as for a
    // loaded checkpoint; with SEMCON_NO_FUSED set, candle's graph and autograd.
    let c = cfg.in_channels;
    let model = crate::model::Model::from_net(
        net.clone(),
        "bench".into(),
        vec![0.0; c],
        vec![1.0; c],
        &device,
    )?
    .with_frozen_weights();
    let path = model.path_name()?;
    let fwd = time(&|| {
        model.logits(&x)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let bwd = if a.backward {
        Some(time(&|| {
            model
                .loss_and_input_grad(&x, &y)?
                .1
                .sum_all()?
                .to_scalar::<f32>()?;
            Ok(())
        })?)
    } else {
        None
    };
    let ips = |s: f64| a.batch as f64 / s;
    if a.json {
        let mut j = serde_json::json!({"arch": a.arch, "width": a.width, "classes": a.classes, "size": a.size,
            "batch": a.batch, "iters": a.iters, "threads": threads, "device": a.device,
            "path": path,
            "forward_s": fwd.0, "forward_cpu_s": fwd.1, "forward_images_per_s": ips(fwd.0)});
        if let Some(b) = bwd {
            j["fwd_bwd_s"] = b.0.into();
            j["fwd_bwd_cpu_s"] = b.1.into();
            j["fwd_bwd_images_per_s"] = ips(b.0).into();
        }
        println!("{j}");
    } else {
        println!(
            "{} cifar stem, width {}, {} classes, {}x{} inputs, batch {}, {} threads ({:?}, {} path)",
            a.arch,
            a.width,
            a.classes,
            a.size,
            a.size,
            a.batch,
            threads,
            device,
            path
        );
        let line = |what: &str, (w, c): (f64, f64)| {
            println!(
                "{what} {:8.1} images/s ({w:.3} s/batch, {c:.3} CPU s/batch)",
                ips(w)
            );
        };
        line("forward:         ", fwd);
        if let Some(b) = bwd {
            line("forward+backward:", b);
        }
    }
    Ok(())
}

/// Writes arrays to an .npz ([`write_atomically`]).
pub fn write_npz(out: &Path, arrays: &[(&str, crate::data::npyz::NpyArray)]) -> Result<()> {
    write_atomically(out, |tmp| Ok(crate::data::npyz::write_npz(tmp, arrays)?))
}

/// Writes `out` through `write` into a temporary file next to it
/// (`NAME.EXT.tmp`), then renames it into place; the temporary file is
/// removed when either step fails.
fn write_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tmp = out.with_extension(format!("{ext}.tmp"));
    write(&tmp)
        .and_then(|_| Ok(std::fs::rename(&tmp, out)?))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", out.display()))
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Features(a)) => cmd_features(&a),
        Some(Command::Eval(a)) => crate::cli_eval::cmd_eval(&a),
        Some(Command::Attack(a)) => crate::cli_eval::cmd_attack(&a),
        Some(Command::Train(a)) => crate::cli_train::cmd_train(&a),
        Some(Command::Perturb(a)) => cmd_perturb(&a),
        Some(Command::Explore(a)) => cmd_explore(&a),
        None => cmd_explore(&cli.explore),
        Some(Command::Kstar(a)) => cmd_kstar(&a),
        Some(Command::Bench(a)) => cmd_bench(&a),
    }
}

/// Entry point: parses, runs, prints errors as one line; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // Usage errors: one line, exit code 2 as usual.
            eprintln!("error: {} (see semcon --help)", usage_line(&e.to_string()));
            return 2;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", format_error(&e));
            1
        }
    }
}

/// A clap usage error on one line: its message with the details clap puts on
/// the lines below (the missing arguments, the possible values, a tip),
/// without the usage and help lines.
fn usage_line(text: &str) -> String {
    let mut line = String::new();
    for l in text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
    {
        let l = l.strip_prefix("error: ").unwrap_or(l);
        if !line.is_empty() {
            line.push_str(if l.starts_with("tip:") {
                "; "
            } else if line.ends_with(':') || l.starts_with('[') {
                " "
            } else {
                ", "
            });
        }
        line.push_str(l);
    }
    if line.is_empty() {
        "invalid arguments".into()
    } else {
        line
    }
}

/// One line: the chain of contexts joined with ": ".
pub fn format_error(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        // First line only: candle appends captured backtraces after a newline.
        let s = c
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
