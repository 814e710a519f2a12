//! What a run works on, resolved once for every front end: the checkpoints
//! (given, or the shipped ones), the dataset (given, or the default that fits
//! the models), the models' names, and the notices a user should see about
//! them (normalisation not stated, gray data fed to colour models, class
//! counts that differ). The CLI commands and the explorer both start here;
//! this module knows neither of them.

use crate::data::preprocess::Preprocess;
use crate::data::{self, DatasetSpec, ImageSet, LoadOptions, Split};
use crate::model::{self, Model, ModelOptions};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Samples the explorer evaluates when no sample count is given.
pub const DEFAULT_SAMPLES: usize = 2000;

/// The shipped variants, in the order the paper compares them.
pub const VARIANTS: [&str; 4] = ["standard", "continuity", "adv", "adv-continuity"];

/// The default dataset: the shipped Fashion-MNIST test set.
pub const DEFAULT_DATASET: &str = "builtin:fashion-mnist";

/// Which models: checkpoint files (none: the shipped ones), what the user
/// states beyond the state dicts, and the device (`auto`, `cpu`, `cuda[:N]`).
#[derive(Clone, Debug, Default)]
pub struct ModelChoice {
    pub checkpoints: Vec<PathBuf>,
    pub options: ModelOptions,
    pub device: Option<String>,
}

/// Which data: a dataset spec (none: the default for the models), its split
/// (none: test), a seeded subset and how strictly image folders are read.
#[derive(Clone, Debug, Default)]
pub struct DataChoice {
    pub dataset: Option<String>,
    pub split: Option<Split>,
    pub samples: Option<usize>,
    pub seed: u64,
    pub skip_bad_images: bool,
    /// torchvision's eval preprocessing of image folders, from flags (none:
    /// the models' sidecars may give one, see [`open_data`]).
    pub preprocess: Option<Preprocess>,
    /// A seeded sample of at most this many images per class.
    pub per_class: Option<usize>,
    /// The fewest outputs of the models (labels beyond are refused early).
    pub num_classes: Option<usize>,
    /// Use the decoded-image cache for image folders.
    pub cache: bool,
    /// Image folders not yet cached are decoded in the background while
    /// they are read (the explorer).
    pub stream: bool,
}

impl DataChoice {
    /// Loads the dataset (resized to `resize` where it has to be), then
    /// [`DataChoice::subset`].
    pub fn load(&self, resize: Option<(usize, usize)>) -> Result<ImageSet> {
        let spec: DatasetSpec = self.dataset.as_deref().unwrap_or(DEFAULT_DATASET).parse()?;
        let opts = LoadOptions {
            split: self.split.unwrap_or(Split::Test),
            resize,
            skip_bad_images: self.skip_bad_images,
            preprocess: self.preprocess,
            per_class: self.per_class,
            samples: self.samples,
            seed: self.seed,
            num_classes: self.num_classes,
            cache: self.cache,
            stream: self.stream,
        };
        let set = data::load(&spec, &opts)?;
        if set.is_empty() {
            bail!("dataset {spec} is empty");
        }
        self.subset(set)
    }

    /// A seeded subset of `set`: `self.per_class` images per class, then
    /// `self.samples` images (all without them). An image folder took both
    /// from its file list already, and then this keeps the whole set.
    pub fn subset(&self, set: ImageSet) -> Result<ImageSet> {
        let set = match self.per_class {
            Some(0) => bail!("--per-class must be at least 1"),
            Some(n) => set.per_class(n, self.seed),
            None => set,
        };
        Ok(match self.samples {
            Some(0) => bail!("--samples must be at least 1"),
            Some(n) => set.subset(n, self.seed),
            None => set,
        })
    }

    /// The same choice for another dataset spec.
    pub fn with_dataset(&self, dataset: &str) -> DataChoice {
        DataChoice {
            dataset: Some(dataset.to_string()),
            ..self.clone()
        }
    }
}

impl ModelChoice {
    /// The device asked for ([`crate::device::select_arg`]).
    pub fn device(&self) -> Result<Device> {
        Ok(crate::device::select_arg(self.device.as_deref())?)
    }

    /// The checkpoints to open: the given ones, else the shipped ones.
    pub fn paths(&self) -> Result<Vec<PathBuf>> {
        if self.checkpoints.is_empty() {
            default_checkpoints(&checkpoint_dirs())
        } else {
            Ok(self.checkpoints.clone())
        }
    }

    /// The one model a command needs; its normalisation notice on stderr.
    pub fn load_one(&self, device: &Device) -> Result<Model> {
        let path = match self.checkpoints.as_slice() {
            [p] => p,
            [] => bail!("--checkpoint is required"),
            _ => bail!("this command takes one --checkpoint"),
        };
        let m = model::load(path, &self.options, device)?;
        if let Some(n) = m.norm_notice() {
            eprintln!("notice: {n}");
        }
        Ok(m)
    }

    /// Every model named (or the shipped ones); normalisation notices on stderr.
    pub fn load_all(&self, device: &Device) -> Result<Vec<Model>> {
        let models = load_models(&self.paths()?, &self.options, device)?;
        for n in models.iter().filter_map(Model::norm_notice) {
            eprintln!("notice: {n}");
        }
        Ok(models)
    }
}

/// Loads every checkpoint of `paths` (each named by its file stem).
pub fn load_models(paths: &[PathBuf], opts: &ModelOptions, device: &Device) -> Result<Vec<Model>> {
    paths
        .iter()
        .map(|p| model::load_named(p, opts, device))
        .collect()
}

/// Loads the dataset for `models` (the default chosen from them when none is
/// given) and checks that its labels fit every model; the notice when gray
/// images will be replicated to colour models comes back beside it.
pub fn open_data(data: &DataChoice, models: &[Model]) -> Result<(ImageSet, Option<String>)> {
    let mut d = data.clone();
    if d.dataset.is_none() {
        d.dataset = Some(default_dataset(models).to_string());
    }
    if d.preprocess.is_none() {
        d.preprocess = sidecar_preprocess(models)?;
    }
    d.num_classes = models.iter().map(|m| m.num_classes()).min();
    let set = d.load(models.first().and_then(|m| m.input_size))?;
    check_labels(&set, models)?;
    let notice = crate::eval::gray_notice(&set, models);
    Ok((set, notice))
}

/// The data for models evaluated one by one (`eval`): each model gets the
/// preprocessing its own sidecar asks for, models that ask for the same
/// share one load, and flags set one preprocessing for all. Returns the
/// distinct sets with the preprocessing each was asked for (image folders
/// apply it; arrays ignore it) and, per model, the index of its set.
pub type SetsEach = (Vec<(ImageSet, Option<Preprocess>)>, Vec<usize>);

pub fn load_data_each(data: &DataChoice, models: &[Model]) -> Result<SetsEach> {
    if data.preprocess.is_some() || models.len() <= 1 {
        let p = match data.preprocess {
            Some(p) => Some(p),
            None => sidecar_preprocess(models)?,
        };
        return Ok((vec![(load_data(data, models)?, p)], vec![0; models.len()]));
    }
    let mut wants: Vec<Option<Preprocess>> = Vec::new();
    let mut set_of = Vec::with_capacity(models.len());
    for m in models {
        let p = sidecar_preprocess(std::slice::from_ref(m))?;
        let i = match wants.iter().position(|w| *w == p) {
            Some(i) => i,
            None => {
                wants.push(p);
                wants.len() - 1
            }
        };
        set_of.push(i);
    }
    let mut sets = Vec::with_capacity(wants.len());
    for (i, p) in wants.iter().enumerate() {
        let group: Vec<Model> = models
            .iter()
            .zip(&set_of)
            .filter(|(_, &j)| j == i)
            .map(|(m, _)| m.clone())
            .collect();
        let d = DataChoice {
            preprocess: *p,
            ..data.clone()
        };
        sets.push((load_data(&d, &group)?, *p));
    }
    Ok((sets, set_of))
}

/// The eval preprocessing the models' sidecars ask for (`resize_size`,
/// `crop_size`, `interpolation`); one per run, so models that ask for
/// different ones are refused until flags settle it.
pub fn sidecar_preprocess(models: &[Model]) -> Result<Option<Preprocess>> {
    let mut found: Option<(Preprocess, &str)> = None;
    for m in models {
        let sc = &m.sidecar;
        let Some(resize) = sc.resize_size else {
            if sc.crop_size.is_some() || sc.interpolation.is_some() {
                bail!(
                    "sidecar of {}: crop_size/interpolation need resize_size",
                    m.path.display()
                );
            }
            continue;
        };
        let p = Preprocess::new(
            resize,
            sc.crop_size.unwrap_or(resize),
            sc.interpolation.unwrap_or(data::resample::Filter::Bilinear),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "sidecar of {}: {}",
                m.path.display(),
                e.replace("--resize", "resize_size")
                    .replace("--crop", "crop_size")
            )
        })?;
        match &found {
            Some((q, other)) if *q != p => bail!(
                "{} and {} ask for different preprocessing in their sidecars ({q:?} and {p:?}); one run uses one: give --resize/--crop/--interpolation",
                other,
                m.name
            ),
            Some(_) => {}
            None => found = Some((p, m.name.as_str())),
        }
    }
    Ok(found.map(|(p, _)| p))
}

/// [`open_data`], with the gray notice on stderr.
pub fn load_data(data: &DataChoice, models: &[Model]) -> Result<ImageSet> {
    let (set, notice) = open_data(data, models)?;
    if let Some(n) = notice {
        eprintln!("notice: {n}");
    }
    Ok(set)
}

/// Checks that the labels of `set` fit every model, naming the checkpoint.
pub fn check_labels(set: &ImageSet, models: &[Model]) -> Result<()> {
    for m in models {
        set.check_labels(m.num_classes())
            .with_context(|| format!("checkpoint {}", m.path.display()))?;
    }
    Ok(())
}

/// A notice when models side by side have different class counts (allowed,
/// since the labels fit all, but more likely a mix-up than intended).
pub fn class_count_notice(models: &[Model]) -> Option<String> {
    let counts: Vec<usize> = models.iter().map(|m| m.num_classes()).collect();
    if counts.iter().all(|&k| k == counts[0]) {
        return None;
    }
    let each: Vec<String> = models
        .iter()
        .map(|m| format!("{} {}", m.name, m.num_classes()))
        .collect();
    Some(format!(
        "the models have different numbers of classes ({}); each DS is over its own logits",
        each.join(", ")
    ))
}

/// `DIR/*.safetensors`: the four variants first (in paper order), then the
/// others sorted by name.
pub fn checkpoints_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    let rank = |p: &PathBuf| {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let r = VARIANTS
            .iter()
            .position(|v| *v == stem)
            .unwrap_or(VARIANTS.len());
        (r, stem.to_string())
    };
    found.sort_by_key(rank);
    found
}

/// Where the shipped checkpoints are looked for: ./checkpoints, then the
/// repository the executable was built in (found from the executable's path,
/// else the source directory baked in at compile time).
pub fn checkpoint_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("checkpoints")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(repo) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("Cargo.toml").is_file() && d.join("checkpoints").is_dir())
        {
            dirs.push(repo.join("checkpoints"));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints"));
    dirs
}

/// The first directory of `dirs` that holds checkpoints, and its checkpoints.
pub fn default_checkpoints(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    for d in dirs {
        let found = checkpoints_in(d);
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "no checkpoints found (looked for *.safetensors in {}); pass models explicitly: \
         semcon explore --checkpoint MODEL.safetensors [--checkpoint MODEL2.safetensors ...] \
         --dataset builtin:fashion-mnist",
        looked.join(", ")
    )
}

/// The dataset for `models` when none is given: the colour-shift split when
/// every model takes 3 channels and a sidecar says it was trained on colour data.
pub fn default_dataset(models: &[Model]) -> &'static str {
    let rgb = models.iter().all(|m| m.in_channels() == 3);
    let colour = models.iter().any(|m| {
        m.sidecar
            .dataset
            .as_deref()
            .is_some_and(|d| d.contains("colour") || d.contains("color"))
    });
    if rgb && colour {
        "builtin:fashion-mnist:colour"
    } else {
        DEFAULT_DATASET
    }
}

/// Names for the panels: file stems, made unique.
pub fn model_names(paths: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in paths {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let mut name = stem.clone();
        let mut i = 2;
        while names.contains(&name) {
            name = format!("{stem}#{i}");
            i += 1;
        }
        names.push(name);
    }
    names
}
