//! Image folders in torchvision `ImageFolder` layout: one sub-folder per class
//! (sorted names = class indices), PNG/JPEG files inside. A folder holding
//! `train/` and `test/` sub-folders is read by split. Images are converted to
//! RGB and resized (bilinear) to the requested size, else to the first image's.
//! Files are decoded by content (as PIL does); hidden files are ignored; any
//! other file that is not a readable PNG/JPEG stops the load, unless
//! `skip_bad_images` is set (then it is skipped with one warning).

use super::{Family, ImageSet, LoadOptions, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn is_image_name(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

pub fn load(dir: &Path, opts: &LoadOptions) -> Result<ImageSet> {
    let split_dir = dir.join(match opts.split {
        Split::Train => "train",
        Split::Test => "test",
    });
    let root = if split_dir.is_dir() && (dir.join("train").is_dir() && dir.join("test").is_dir()) {
        split_dir
    } else {
        dir.to_path_buf()
    };
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
    let mut data = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = Vec::new();
    for (ci, cdir) in classes.iter().enumerate() {
        for f in sorted_entries(cdir)? {
            // Hidden files (.DS_Store, ._x.png from macOS) are never images.
            let hidden = f
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !f.is_file() || hidden {
                continue;
            }
            let decoded = if is_image_name(&f) {
                // By content, as PIL does: a PNG named .jpg still opens.
                image::ImageReader::open(&f)
                    .and_then(|r| r.with_guessed_format())
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.decode().map_err(|e| e.to_string()))
            } else {
                Err("not a PNG/JPEG file".to_string())
            };
            let img = match decoded {
                Ok(img) => img.to_rgb8(),
                Err(why) => {
                    if opts.skip_bad_images {
                        skipped.push(f.display().to_string());
                        continue;
                    }
                    return Err(Error::format(
                        &f,
                        format!(
                            "image folder {}: {why}; it was not skipped (remove it, or pass --skip-bad-images to skip such files)",
                            root.display()
                        ),
                    ));
                }
            };
            let (h, w) = *size.get_or_insert((img.height() as usize, img.width() as usize));
            let img = if (img.height() as usize, img.width() as usize) != (h, w) {
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
    }
    if !skipped.is_empty() {
        eprintln!(
            "warning: image folder {}: skipped {} file(s) that are not readable PNG/JPEG images, first: {}",
            root.display(),
            skipped.len(),
            skipped[0]
        );
    }
    if labels.is_empty() {
        return Err(Error::format(
            &root,
            "image folder holds no PNG/JPEG images",
        ));
    }
    let (h, w) = size.unwrap_or((0, 0));
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
