//! Entry points for the fuzzers (`fuzz/`, `scripts/fuzz.sh`) and for the
//! regression corpus the tests replay (`tests/hostile.rs`): one function per
//! reader of files semcon did not write, each taking the raw bytes of one
//! file and running the same code a command runs on it. A reader may refuse
//! the bytes (an `Err` is the expected outcome for most mutated files); what
//! none may do is panic, hang, or allocate by what a header announces.

use crate::data::{self, Split};
use crate::model::{self, ModelOptions};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// The readers that can be fuzzed, by the name `scripts/fuzz.sh` takes.
pub const TARGETS: &[&str] = &[
    "idx",
    "cifar",
    "npy",
    "npz",
    "image",
    "safetensors",
    "pth",
    "pickle",
    "sidecar",
];

/// Runs the reader `target` on `bytes`; `Ok` with whether the reader
/// accepted them (`Ok(false)`: refused with an error, as it should for most
/// inputs), `Err` for an unknown target.
pub fn run(target: &str, bytes: &[u8]) -> Result<bool, String> {
    let accepted = match target {
        "idx" => idx(bytes),
        "cifar" => cifar(bytes),
        "npy" => npy(bytes),
        "npz" => npz(bytes),
        "image" => image(bytes),
        "safetensors" => checkpoint(bytes, "safetensors"),
        "pth" => checkpoint(bytes, "pth"),
        "pickle" => pickle(bytes),
        "sidecar" => sidecar(bytes),
        other => {
            return Err(format!(
                "unknown fuzz target '{other}' (known: {})",
                TARGETS.join(", ")
            ))
        }
    };
    Ok(accepted)
}

/// A scratch directory of this process and thread (the fuzzers run one
/// input at a time; the tests replay in parallel threads).
fn scratch() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id()).replace(['(', ')'], "");
    let dir = std::env::temp_dir().join(format!("semcon-fuzz-{}-{thread}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Removes this thread's scratch directory (the tests call it when done).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// Writes `bytes` to `name` in the scratch directory.
fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    let _ = std::fs::write(&p, bytes);
    p
}

/// An images idx file (as `parse_images`, also gzip) and the same bytes as a
/// labels file.
pub fn idx(bytes: &[u8]) -> bool {
    let p = Path::new("fuzz.idx");
    let Ok(plain) = data::idx::maybe_gunzip(p, bytes) else {
        return false;
    };
    let images = data::idx::parse_images(p, &plain).is_ok();
    let labels = data::idx::parse_labels(p, &plain).is_ok();
    images || labels
}

/// A CIFAR-10/100 binary batch file.
pub fn cifar(bytes: &[u8]) -> bool {
    data::cifar::load_file(&file("data_batch_1.bin", bytes)).is_ok()
}

/// A `.npy` array: numbers (as images, labels and input arrays) and strings
/// (as class names).
pub fn npy(bytes: &[u8]) -> bool {
    let numbers = data::npyz::parse_npy(bytes).is_ok();
    let strings = data::npyz::parse_npy_strings(bytes).is_ok();
    numbers || strings
}

/// A `.npz` dataset (both splits' keys) and every member of the archive.
pub fn npz(bytes: &[u8]) -> bool {
    let p = file("fuzz.npz", bytes);
    let mut ok = data::npz::load(&p, Split::Test).is_ok();
    ok |= data::npz::load(&p, Split::Train).is_ok();
    if let Ok(z) = data::npyz::Npz::open(&p) {
        for name in z.names() {
            let _ = z.get(&name);
            let _ = z.get_strings(&name);
        }
    }
    ok
}

/// One image file of an image folder, decoded as the folder reader does it
/// (by content) and resized; with a limit of 4 Mpixels instead of PIL's 179,
/// so that the fuzzer spends its time parsing rather than decoding huge
/// plain images (the limit itself is checked in `tests/hostile.rs`).
pub fn image(bytes: &[u8]) -> bool {
    let p = file("image", bytes);
    match data::folder::decode(&p, 4 << 20) {
        Ok(img) => {
            let _ = ::image::imageops::resize(&img, 8, 8, ::image::imageops::FilterType::Triangle);
            // torchvision's preprocessing (PIL's resampling, the crop's window).
            let pre = data::preprocess::Preprocess::new(9, 7, data::resample::Filter::Bicubic)
                .expect("valid sizes");
            let _ = pre.apply(img.as_raw(), img.width() as usize, img.height() as usize);
            // (an error for empty or bomb-sized results; never a panic)
            if data::jpeg::is_jpeg(bytes) {
                // Only the crop's source region, as a folder's first read does.
                if let Ok(d) =
                    data::jpeg::decode_window(bytes, 4 << 20, |w, h| pre.source_window(w, h))
                {
                    let _ = pre.apply_window(&d.rgb, (d.width, d.height), d.window);
                }
            }
            true
        }
        Err(_) => false,
    }
}

/// A checkpoint loaded as a model (state dict, architecture inference,
/// shape and value checks, the network built).
fn checkpoint(bytes: &[u8], ext: &str) -> bool {
    let p = file(&format!("fuzz.{ext}"), bytes);
    model::load(&p, &ModelOptions::default(), &Device::Cpu).is_ok()
}

/// A pickle stream as the `data.pkl` of a torch.save archive: the
/// allow-list check, then (when it passes) candle's unpickler that reads
/// the tensor descriptions from it.
pub fn pickle(bytes: &[u8]) -> bool {
    match model::pickle_scan::first_disallowed(bytes) {
        Ok(None) => {}
        _ => return false,
    }
    let mut stack = candle_core::pickle::Stack::empty();
    let mut r = std::io::BufReader::new(bytes);
    stack.read_loop(&mut r).is_ok() && stack.finalize().is_ok()
}

/// The JSON sidecar beside a checkpoint (a small valid ResNet written once
/// per process), loaded with the model.
pub fn sidecar(bytes: &[u8]) -> bool {
    let dir = scratch();
    let ckpt = dir.join("sidecar.safetensors");
    if !ckpt.is_file() {
        let _ = std::fs::create_dir_all(&dir);
        if tiny_checkpoint(&ckpt).is_err() {
            return false;
        }
    }
    let _ = std::fs::write(model::checkpoint::sidecar_path(&ckpt), bytes);
    model::load(&ckpt, &ModelOptions::default(), &Device::Cpu).is_ok()
}

/// A ResNet-18 with 4 channels per stage, 1 input channel and 3 classes.
fn tiny_checkpoint(p: &Path) -> crate::Result<()> {
    let cfg = model::ResNetConfig::named("resnet18", model::Stem::Cifar, 4, 1, 3)?;
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in cfg.expected_shapes() {
        let fill = if name.ends_with("running_var") || name.ends_with(".weight") {
            1.0
        } else {
            0.0
        };
        let t = candle_core::Tensor::full(fill as f32, shape.as_slice(), &Device::Cpu)?;
        tensors.insert(name, t);
    }
    candle_core::safetensors::save(&tensors, p)?;
    Ok(())
}
