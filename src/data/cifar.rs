//! CIFAR-10 and CIFAR-100 binary version (`cifar-10-batches-bin`,
//! `cifar-100-binary`). Records: CIFAR-10 = 1 label byte + 3072 pixels,
//! CIFAR-100 = coarse + fine label bytes + 3072 pixels (the fine label is used).

use super::set::{Family, ImageSet, Split};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const PIX: usize = 3 * 32 * 32;

fn parse(path: &Path, b: &[u8], label_bytes: usize, out: &mut ImageSet) -> Result<()> {
    let rec = label_bytes + PIX;
    let (what, classes) = if label_bytes == 1 {
        ("CIFAR-10", 10)
    } else {
        ("CIFAR-100", 100)
    };
    if b.is_empty() || !b.len().is_multiple_of(rec) {
        return Err(Error::format(
            path,
            format!(
                "truncated {what} binary file: {} bytes is not a whole number of {rec}-byte records",
                b.len()
            ),
        ));
    }
    for (i, r) in b.chunks_exact(rec).enumerate() {
        let y = r[label_bytes - 1] as u32;
        if y as usize >= classes {
            return Err(Error::format(
                path,
                format!(
                    "record {i} has label {y}, but {what} labels are 0..{} (not a {what} binary file?)",
                    classes - 1
                ),
            ));
        }
        out.labels.push(y);
        if let super::pixels::Pixels::F32(data) = &mut out.data {
            data.extend(r[label_bytes..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    Ok(())
}

fn empty(name: String, fam: Family, class_names: Vec<String>) -> ImageSet {
    ImageSet {
        name,
        channels: 3,
        height: 32,
        width: 32,
        data: Vec::new().into(),
        labels: Vec::new(),
        class_names,
        norm: fam.norm(),
    }
}

fn names_from(dir: &Path, file: &str, default: Vec<String>) -> Vec<String> {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(s) => {
            let v: Vec<String> = s
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if v.len() == default.len() {
                v
            } else {
                default
            }
        }
        Err(_) => default,
    }
}

fn numbered(k: usize) -> Vec<String> {
    (0..k).map(|i| i.to_string()).collect()
}

/// A single `.bin` file; the variant is told by the record size.
pub fn load_file(p: &Path) -> Result<ImageSet> {
    let b = super::files::read_file(p)?;
    let dir = p.parent().unwrap_or(Path::new("."));
    if b.is_empty() || (b.len() % (PIX + 1) != 0 && b.len() % (PIX + 2) != 0) {
        return Err(Error::format(
            p,
            format!(
                "truncated CIFAR binary file: {} bytes is not a whole number of records \
                 ({}-byte CIFAR-10 or {}-byte CIFAR-100 records)",
                b.len(),
                PIX + 1,
                PIX + 2
            ),
        ));
    }
    let c100 = b.len() % (PIX + 2) == 0 && b.len() % (PIX + 1) != 0;
    let mut set = if c100 {
        empty(
            p.display().to_string(),
            Family::Cifar100,
            names_from(dir, "fine_label_names.txt", numbered(100)),
        )
    } else {
        empty(
            p.display().to_string(),
            Family::Cifar10,
            names_from(
                dir,
                "batches.meta.txt",
                super::set::CIFAR10_CLASSES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        )
    };
    parse(p, &b, if c100 { 2 } else { 1 }, &mut set)?;
    set.validated()
}

/// A CIFAR directory; `None` when `dir` does not look like one.
pub fn load_dir(dir: &Path, split: Split) -> Result<Option<ImageSet>> {
    let c10_files: Vec<PathBuf> = match split {
        Split::Train => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    if dir.join("test_batch.bin").is_file() || dir.join("data_batch_1.bin").is_file() {
        let mut set = empty(
            dir.display().to_string(),
            Family::Cifar10,
            names_from(
                dir,
                "batches.meta.txt",
                super::set::CIFAR10_CLASSES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        );
        for f in &c10_files {
            if !f.is_file() {
                let names: Vec<String> = c10_files
                    .iter()
                    .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                return Err(Error::format(
                    f,
                    format!(
                        "missing: the CIFAR-10 {} split of {} reads {}",
                        if split == Split::Train {
                            "train"
                        } else {
                            "test"
                        },
                        dir.display(),
                        names.join(", ")
                    ),
                ));
            }
            let b = super::files::read_file(f)?;
            parse(f, &b, 1, &mut set)?;
        }
        return Ok(Some(set.validated()?));
    }
    let f = dir.join(match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    });
    if dir.join("test.bin").is_file() || dir.join("train.bin").is_file() {
        let mut set = empty(
            dir.display().to_string(),
            Family::Cifar100,
            names_from(dir, "fine_label_names.txt", numbered(100)),
        );
        if !f.is_file() {
            return Err(Error::format(
                &f,
                format!(
                    "missing: the CIFAR-100 directory {} has no {} file for the {} split",
                    dir.display(),
                    f.file_name().unwrap_or_default().to_string_lossy(),
                    if split == Split::Train {
                        "train"
                    } else {
                        "test"
                    }
                ),
            ));
        }
        let b = super::files::read_file(&f)?;
        parse(&f, &b, 2, &mut set)?;
        return Ok(Some(set.validated()?));
    }
    Ok(None)
}
