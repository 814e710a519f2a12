//! Image folders in torchvision `ImageFolder` layout: one sub-folder per class
//! (sorted names = class indices), images anywhere below it (walked
//! recursively, in torchvision's order: by folder path, then file name). A
//! folder holding `train/` and `test/` (or `val/`) sub-folders is read by
//! split. As in torchvision, only files with an image extension count (.png
//! .jpg .jpeg .bmp .ppm .pgm .tif .tiff .webp; other files are ignored, with
//! a notice), and a class folder without images is an error (it would shift
//! every later label). Images are decoded by content (as PIL does; JPEG by
//! `jpeg.rs`, identical to PIL), converted to RGB, then given torchvision's
//! eval preprocessing (`resample.rs`: shorter side resized, center crop)
//! when asked, else resized (bilinear) to the requested size, else to the
//! first image's (with a notice when sizes differ). Decoding runs on every
//! core, with a progress bar on a terminal. `per_class` keeps a seeded
//! sample of each class before anything is decoded. Hidden files
//! (`.DS_Store`, macOS `._x.png`) are ignored; an image file that does not
//! decode stops the load, naming it, unless `skip_bad_images` is set (then
//! it is skipped, and a warning counts them).

use super::cache;
use super::imagenet;
use super::jpeg;
use super::pixels::{Bytes, Pixels};
use super::set::{per_class_indices, subset_indices, Family, ImageSet, LoadOptions, Split};
use super::stream;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// torchvision's `IMG_EXTENSIONS`.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The files below `dir` (following links), ordered as torchvision's
/// `sorted(os.walk(dir))` then `sorted(files)`: by folder path, then name.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>, depth: usize) -> Result<()> {
    if depth > 64 {
        return Err(Error::format(dir, "folders nested too deep (a link loop?)"));
    }
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            walk(&p, out, depth + 1)?;
        } else if p.is_file() {
            out.push((dir.to_path_buf(), p));
        }
    }
    Ok(())
}

/// The folder to read for `split`: `train/`, or `test/` (`val/` when there
/// is no `test/`, as in ImageNet's layout), when `dir` holds `train/` and one
/// of those; else `dir` itself.
fn split_root(dir: &Path, split: Split) -> PathBuf {
    let test = ["test", "val"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_dir());
    match (dir.join("train").is_dir(), test) {
        (true, Some(test)) => match split {
            Split::Train => dir.join("train"),
            Split::Test => test,
        },
        _ => dir.to_path_buf(),
    }
}

/// The most pixels an image may have: PIL's `DecompressionBombError`
/// threshold (twice `Image.MAX_IMAGE_PIXELS`), so that semcon refuses what
/// torchvision's loader refuses and a small file announcing a huge image
/// costs nothing.
pub const MAX_PIXELS: u64 = super::resample::MAX_PIXELS;

/// Decodes one image file as RGB, by content as PIL does (a PNG named .jpg
/// still opens; JPEG as PIL decodes it, [`jpeg`]); the dimensions are read
/// and checked against `max_pixels` before any pixel is decoded.
pub fn decode(path: &Path, max_pixels: u64) -> std::result::Result<image::RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    decode_bytes(&bytes, max_pixels)
}

/// [`decode`] of a file's bytes.
pub fn decode_bytes(bytes: &[u8], max_pixels: u64) -> std::result::Result<image::RgbImage, String> {
    use image::ImageDecoder;
    if jpeg::is_jpeg(bytes) {
        let (w, h, px) = jpeg::decode_rgb(bytes, max_pixels)?;
        return image::RgbImage::from_raw(w as u32, h as u32, px)
            .ok_or_else(|| "decoded JPEG has the wrong number of pixels".to_string());
    }
    let decoder = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .into_decoder()
        .map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > max_pixels {
        return Err(format!(
            "{w}x{h} pixels is more than the {max_pixels} an image may have (PIL's decompression-bomb limit)"
        ));
    }
    // The decoders panic on some malformed files (fuzzing found one in the
    // png crate): that is an error naming the file, not a crash.
    crate::error::catch_quietly(|| image::DynamicImage::from_decoder(decoder))
        .map_err(|why| format!("the image decoder failed ({why})"))?
        .map(|img| img.to_rgb8())
        .map_err(|e| e.to_string())
}

/// One image decoded and brought to the set's size, as CHW bytes.
fn prepare(
    path: &Path,
    opts: &LoadOptions,
    size: (usize, usize),
) -> std::result::Result<(Vec<u8>, bool), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if let (Some(p), true) = (&opts.preprocess, jpeg::is_jpeg(&bytes)) {
        // Only the part of the JPEG under the crop's taps is decoded.
        let d = jpeg::decode_window(&bytes, MAX_PIXELS, |w, h| p.source_window(w, h))?;
        let hwc = p.apply_window(&d.rgb, (d.width, d.height), d.window)?;
        return Ok((to_chw(&hwc), false));
    }
    let img = decode_bytes(&bytes, MAX_PIXELS)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (hwc, resized) = match &opts.preprocess {
        Some(p) => (p.apply(img.as_raw(), w, h)?, false),
        None if (h, w) != size => (
            image::imageops::resize(
                &img,
                size.1 as u32,
                size.0 as u32,
                image::imageops::FilterType::Triangle,
            )
            .into_raw(),
            true,
        ),
        None => (img.into_raw(), false),
    };
    Ok((to_chw(&hwc), resized))
}

/// Interleaved RGB -> channel planes.
fn to_chw(hwc: &[u8]) -> Vec<u8> {
    let n = hwc.len() / 3;
    let mut chw = vec![0u8; n * 3];
    let (r, gb) = chw.split_at_mut(n);
    let (g, b) = gb.split_at_mut(n);
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
    chw
}

pub fn load(dir: &Path, opts: &LoadOptions) -> Result<ImageSet> {
    let root = split_root(dir, opts.split);
    let classes: Vec<PathBuf> = sorted_entries(&root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if classes.is_empty() {
        return Err(Error::format(
            &root,
            "not a dataset: no idx/CIFAR files and no class sub-folders (image folder layout: ROOT/CLASS/IMAGE.png)",
        ));
    }
    let mut files: Vec<(PathBuf, u32)> = Vec::new();
    let mut ignored = Vec::new();
    let mut empty = Vec::new();
    for (ci, cdir) in classes.iter().enumerate() {
        let mut found = Vec::new();
        walk(cdir, &mut found, 0)?;
        // Python sorts the folder paths as strings ("a/x-y" before "a/x/z").
        found.sort_by_cached_key(|(d, f)| (d.to_string_lossy().into_owned(), f.clone()));
        let before = files.len();
        for (_, f) in found {
            if is_hidden(&f) {
                continue;
            }
            if !is_image_name(&f) {
                ignored.push(f);
                continue;
            }
            files.push((f, ci as u32));
        }
        if files.len() == before {
            empty.push(
                cdir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            );
        }
    }
    if files.is_empty() {
        return Err(Error::format(&root, "image folder holds no images"));
    }
    if !empty.is_empty() {
        return Err(Error::format(
            &root,
            format!(
                "class folder(s) {} hold no images, which would shift every later class index (torchvision's ImageFolder refuses them too): remove them",
                empty.join(", ")
            ),
        ));
    }
    if !ignored.is_empty() {
        eprintln!(
            "notice: image folder {}: ignored {} file(s) without an image extension (as torchvision does), first: {}",
            root.display(),
            ignored.len(),
            ignored[0].display()
        );
    }
    let mut class_names: Vec<String> = classes
        .iter()
        .map(|c| {
            c.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    // Folders named by ImageNet wnids: ImageNet-1k's indices and names, so
    // that a subset of the classes still lines up with a 1,000-class model.
    let wnids: Option<Vec<usize>> = class_names.iter().map(|n| imagenet::index(n)).collect();
    if let Some(idx) = wnids {
        if idx.len() < 1000 {
            eprintln!(
                "notice: image folder {}: its {} class folders are ImageNet wnids: labels are their ImageNet-1k indices (ImageFolder would number them 0..{})",
                root.display(),
                idx.len(),
                idx.len() - 1
            );
        }
        for (_, l) in files.iter_mut() {
            *l = idx[*l as usize] as u32;
        }
        class_names = imagenet::names();
    }
    // A label the model cannot take is refused before anything is decoded.
    if let Some(k) = opts.num_classes {
        if let Some((f, l)) = files.iter().find(|(_, l)| *l as usize >= k) {
            return Err(crate::invalid!(
                "dataset {}: label {l} ({}) does not fit a model with {k} classes (labels must be 0..{}); nothing was decoded",
                root.display(),
                f.display(),
                k.saturating_sub(1)
            ));
        }
    }
    if let Some(n) = opts.per_class {
        if n == 0 {
            return Err(crate::invalid!("--per-class must be at least 1"));
        }
        let labels: Vec<u32> = files.iter().map(|(_, l)| *l).collect();
        let keep = per_class_indices(&labels, n, opts.seed);
        files = keep.into_iter().map(|i| files[i].clone()).collect();
    }
    let bad = |f: &Path, why: &str| bad_image(&root, f, why);
    // The size every image is brought to: the crop, the requested size, or
    // the first image that decodes.
    let size = match (&opts.preprocess, opts.resize) {
        (Some(p), _) => (p.crop, p.crop),
        (None, Some(s)) => s,
        (None, None) => {
            let mut first = None;
            for (f, _) in &files {
                match decode(f, MAX_PIXELS) {
                    Ok(img) => {
                        first = Some((img.height() as usize, img.width() as usize));
                        break;
                    }
                    Err(why) if !opts.skip_bad_images => return Err(bad(f, &why)),
                    Err(_) => {}
                }
            }
            first.ok_or_else(|| Error::format(&root, "no image in the folder decodes"))?
        }
    };
    let shape = (3, size.0, size.1);
    let cache_of = |files: &[(PathBuf, u32)]| {
        opts.cache
            .then(cache::dir)
            .flatten()
            .map(|d| d.join(format!("{}.u8", cache_key(&root, files, opts, size).hex())))
    };
    let mapped = |p: &Path, files: &[(PathBuf, u32)]| {
        cache::map(p, shape).filter(|c| c.labels.len() as u64 + c.skipped == files.len() as u64)
    };
    // --samples: a seeded subset of the file list (after the size is known,
    // as it was from the whole folder). A cache of the whole list with no
    // file skipped serves it as it is: the same images, not decoded again.
    let mut cached = None;
    if let Some(n) = opts.samples.filter(|&n| n > 0 && n < files.len()) {
        let keep = subset_indices(files.len(), n, opts.seed);
        let full = cache_of(&files)
            .and_then(|p| mapped(&p, &files))
            .filter(|c| c.skipped == 0);
        if let Some((c, Pixels::U8(b))) = full.as_ref().map(|c| (c, &c.pixels)) {
            let (img, b) = (3 * size.0 * size.1, b.as_slice());
            cached = Some(cache::Cached {
                labels: keep.iter().map(|&i| c.labels[i]).collect(),
                pixels: Pixels::U8(Arc::new(Bytes::Owned(
                    keep.iter()
                        .flat_map(|&i| &b[i * img..(i + 1) * img])
                        .copied()
                        .collect(),
                ))),
                skipped: 0,
            });
        }
        files = keep.into_iter().map(|i| files[i].clone()).collect();
    }
    let cache_path = cache_of(&files);
    let cached = cached.or_else(|| cache_path.as_deref().and_then(|p| mapped(p, &files)));
    let stream = opts.stream && !opts.skip_bad_images && cached.is_none();
    let (pixels, labels, resized) = match cached {
        None if stream => {
            let labels: Vec<u32> = files.iter().map(|(_, l)| *l).collect();
            let (root, o) = (root.clone(), opts.clone());
            let pixels = stream::decode(
                files.into_iter().map(|(f, _)| f).collect(),
                labels.clone(),
                shape,
                cache_path.as_deref(),
                move |f: &Path| prepare(f, &o, size).map(|(chw, _)| chw),
                move |f: &Path, why: &str| bad_image(&root, f, why).to_string(),
            )?;
            (pixels, labels, 0)
        }
        Some(c) => {
            if c.skipped > 0 {
                eprintln!(
                    "warning: image folder {}: skipped {} image file(s) that do not decode (as when they were first read; the cache remembers)",
                    root.display(),
                    c.skipped
                );
            }
            (c.pixels, c.labels, 0)
        }
        None => {
            let no_cache = |p: &Path, e: std::io::Error| {
                eprintln!(
                    "notice: cannot write the decoded-image cache {} ({e}); working without it (SEMCON_CACHE_DIR chooses another place)",
                    p.display()
                );
            };
            let mut writer = cache_path.as_deref().and_then(|p| {
                cache::Writer::create(p, shape)
                    .map_err(|e| no_cache(p, e))
                    .ok()
            });
            // A cache that fails while being written costs a second decode,
            // into memory.
            let d = loop {
                match decode_all(&files, opts, size, &bad, writer.take())? {
                    Ok(d) => break d,
                    Err(e) => no_cache(cache_path.as_deref().expect("a writer had a path"), e),
                }
            };
            if !d.skipped.is_empty() {
                eprintln!(
                    "warning: image folder {}: skipped {} image file(s) that do not decode, first: {} ({})",
                    root.display(),
                    d.skipped.len(),
                    d.skipped[0].0.display(),
                    d.skipped[0].1
                );
            }
            (d.pixels, d.labels, d.resized)
        }
    };
    if labels.is_empty() {
        return Err(Error::format(&root, "no image in the folder decodes"));
    }
    let (h, w) = size;
    if resized > 0 && opts.resize.is_none() && opts.preprocess.is_none() {
        eprintln!(
            "notice: image folder {}: {resized} image(s) of another size resized to {h}x{w} (the first image's; --input-size or a sidecar's input_size sets it)",
            root.display()
        );
    }
    ImageSet {
        name: root.display().to_string(),
        channels: 3,
        height: h,
        width: w,
        data: pixels,
        labels,
        class_names,
        norm: Family::Unknown.norm(),
    }
    .validated()
}

/// A folder decoded: its pixels (uint8 CHW, mapped from the cache file
/// when one was written), the labels, the files skipped (with
/// `skip_bad_images`) and how many images were resized to the set's size.
struct Decoded {
    pixels: Pixels,
    labels: Vec<u32>,
    skipped: Vec<(PathBuf, String)>,
    resized: usize,
}

/// Decodes and prepares every file on all cores, in order, into the cache
/// `writer` (then mapped from it: nothing grows in memory with the folder)
/// or, without one, into memory. The outer error is a bad image; the inner
/// one the cache failing to be written.
fn decode_all(
    files: &[(PathBuf, u32)],
    opts: &LoadOptions,
    size: (usize, usize),
    bad: &dyn Fn(&Path, &str) -> Error,
    mut writer: Option<cache::Writer>,
) -> Result<std::result::Result<Decoded, std::io::Error>> {
    let pb = progress(files.len());
    let mut memory = Vec::new();
    if writer.is_none() {
        // Room for every image up front: no copies while the set grows.
        memory.reserve(files.len().saturating_mul(3 * size.0 * size.1));
    }
    let mut labels: Vec<u32> = Vec::new();
    let mut skipped = Vec::new();
    let mut resized = 0usize;
    // Chunks keep the order and bound what is held besides the result.
    for chunk in files.chunks(256) {
        let out: Vec<std::result::Result<(Vec<u8>, bool), String>> = chunk
            .par_iter()
            .map(|(f, _)| prepare(f, opts, size))
            .collect();
        for ((f, label), r) in chunk.iter().zip(out) {
            match r {
                Ok((chw, r)) => {
                    resized += usize::from(r);
                    match &mut writer {
                        Some(w) => {
                            if let Err(e) = w.pixels(&chw) {
                                pb.finish_and_clear();
                                return Ok(Err(e));
                            }
                        }
                        None => memory.extend_from_slice(&chw),
                    }
                    labels.push(*label);
                }
                Err(why) if opts.skip_bad_images => skipped.push((f.clone(), why)),
                Err(why) => {
                    pb.finish_and_clear();
                    return Err(bad(f, &why));
                }
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let pixels = match writer {
        Some(w) => match w.finish(&labels, skipped.len() as u64) {
            Ok(c) => c.pixels,
            Err(e) => return Ok(Err(e)),
        },
        None => Pixels::U8(Arc::new(Bytes::Owned(memory))),
    };
    Ok(Ok(Decoded {
        pixels,
        labels,
        skipped,
        resized,
    }))
}

/// The error of a file that does not decode (not skipped).
fn bad_image(root: &Path, f: &Path, why: &str) -> Error {
    Error::format(
        f,
        format!(
            "image folder {}: cannot decode this image: {why}; it was not skipped (remove it, or pass --skip-bad-images to skip such files)",
            root.display()
        ),
    )
}

/// The cache name of a folder read: its files (path, size, time, label),
/// how they are brought to `size`, and whether bad files are skipped.
fn cache_key(
    root: &Path,
    files: &[(PathBuf, u32)],
    opts: &LoadOptions,
    size: (usize, usize),
) -> cache::Key {
    let mut k = cache::Key::default();
    k.str(
        &std::fs::canonicalize(root)
            .unwrap_or_else(|_| root.to_path_buf())
            .to_string_lossy(),
    );
    k.num(files.len() as u64);
    for (f, l) in files {
        k.file(f);
        k.num(*l as u64);
    }
    match &opts.preprocess {
        Some(p) => {
            k.str("torchvision");
            k.num(p.resize as u64);
            k.num(p.crop as u64);
            k.str(&format!("{:?}", p.filter));
        }
        None => k.str("squash-triangle"),
    }
    k.num(size.0 as u64);
    k.num(size.1 as u64);
    k.num(u64::from(opts.skip_bad_images));
    k
}

/// A progress bar with an ETA for decoding `n` images (drawn only on a
/// terminal, and only for folders large enough to wait for).
fn progress(n: usize) -> indicatif::ProgressBar {
    if n < 500 {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "decoding images [{bar:30}] {pos}/{len} {per_sec} {elapsed}<{eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    pb
}
