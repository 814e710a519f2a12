//! Helpers the commands share: checking `--out` before any work, and the
//! progress bar of the long headless commands.

use anyhow::{bail, Result};
use std::path::Path;

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

/// A progress bar of `total` steps labelled `msg` (hidden off a terminal).
pub fn progress(total: u64, msg: String) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>28} [{bar:30}] {pos}/{len} {elapsed} (eta {eta})",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// Images (`--input`, float32 NCHW .npy) with their labels (`--labels`,
/// integer .npy), one label per image or an error naming both files.
pub fn input_with_labels(xp: &Path, yp: &Path) -> Result<crate::data::ImageSet> {
    let mut set = crate::data::input::read_input_set(xp)?;
    let yt = crate::data::npyz::read_npy_file(yp)?;
    let y = crate::data::npz::labels_from(&yt, yp)?;
    if y.len() != set.len() {
        bail!(
            "{} has {} labels but {} has {} images",
            yp.display(),
            y.len(),
            xp.display(),
            set.len()
        );
    }
    set.labels = y;
    Ok(set)
}
