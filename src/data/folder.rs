//! Image folders in torchvision `ImageFolder` layout: one sub-folder per class
//! (sorted names = class indices), images anywhere below it (walked
//! recursively, in torchvision's order: by folder path, then file name). A
//! folder holding `train/` and `test/` (or `val/`) sub-folders is read by
//! split. As in torchvision, only files with an image extension count (.png
//! .jpg .jpeg .bmp .ppm .pgm .tif .tiff .webp; other files are ignored, with
//! a notice), and a class folder without images is an error (it would shift
//! every later label). Images are decoded by content (as PIL does), converted
//! to RGB and resized (bilinear) to the requested size, else to the first
//! image's (with a notice when sizes differ). Hidden files (`.DS_Store`,
//! macOS `._x.png`) are ignored; an image file that does not decode stops the
//! load, unless `skip_bad_images` is set (then it is skipped with one warning).

use super::set::{Family, ImageSet, LoadOptions, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

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
pub const MAX_PIXELS: u64 = 178_956_970;

/// Decodes one image file as RGB, by content as PIL does (a PNG named .jpg
/// still opens); the dimensions are read and checked against `max_pixels`
/// before any pixel is decoded.
pub fn decode(path: &Path, max_pixels: u64) -> std::result::Result<image::RgbImage, String> {
    use image::ImageDecoder;
    let decoder = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?
        .into_decoder()
        .map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > max_pixels {
        return Err(format!(
            "{w}x{h} pixels is more than the {max_pixels} an image may have (PIL's decompression-bomb limit)"
        ));
    }
    image::DynamicImage::from_decoder(decoder)
        .map(|img| img.to_rgb8())
        .map_err(|e| e.to_string())
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
    let mut size = opts.resize;
    let mut resized = 0usize;
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = Vec::new();
    let mut ignored = Vec::new();
    let mut empty = Vec::new();
    for (ci, cdir) in classes.iter().enumerate() {
        let mut files = Vec::new();
        walk(cdir, &mut files, 0)?;
        // Python sorts the folder paths as strings ("a/x-y" before "a/x/z").
        files.sort_by_cached_key(|(d, f)| (d.to_string_lossy().into_owned(), f.clone()));
        let before = labels.len();
        for (_, f) in files {
            if is_hidden(&f) {
                continue;
            }
            if !is_image_name(&f) {
                ignored.push(f);
                continue;
            }
            let img = match decode(&f, MAX_PIXELS) {
                Ok(img) => img,
                Err(why) => {
                    if opts.skip_bad_images {
                        skipped.push(f.display().to_string());
                        continue;
                    }
                    return Err(Error::format(
                        &f,
                        format!(
                            "image folder {}: cannot decode this image: {why}; it was not skipped (remove it, or pass --skip-bad-images to skip such files)",
                            root.display()
                        ),
                    ));
                }
            };
            let (h, w) = *size.get_or_insert((img.height() as usize, img.width() as usize));
            let img = if (img.height() as usize, img.width() as usize) != (h, w) {
                resized += 1;
                image::imageops::resize(
                    &img,
                    w as u32,
                    h as u32,
                    image::imageops::FilterType::Triangle,
                )
            } else {
                img
            };
            // HWC u8 -> CHW f32
            let raw = img.as_raw();
            for c in 0..3 {
                data.extend(raw.iter().skip(c).step_by(3).map(|&p| p as f32 / 255.0));
            }
            labels.push(ci as u32);
        }
        if labels.len() == before {
            empty.push(
                cdir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            );
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "warning: image folder {}: skipped {} image file(s) that do not decode, first: {}",
            root.display(),
            skipped.len(),
            skipped[0]
        );
    }
    if labels.is_empty() {
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
    let (h, w) = size.unwrap_or((0, 0));
    if resized > 0 && opts.resize.is_none() {
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
        data,
        labels,
        class_names: classes
            .iter()
            .map(|c| {
                c.file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
        norm: Family::Unknown.norm(),
    }
    .validated()
}
