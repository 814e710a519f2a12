//! The decoded-image cache of image folders (src/data/cache.rs): written on
//! the first read, read on the next, rebuilt when it is truncated, from
//! another version or altered in size; a folder whose files change gets
//! another cache; a cache directory that cannot be written only costs a
//! notice. One test: it sets SEMCON_CACHE_DIR for this process.

mod common;

use common::*;
use semcon::data::resample::{Filter, Preprocess};
use semcon::data::{self, DatasetSpec, ImageSet, LoadOptions};
use std::path::Path;

fn load(tree: &Path) -> ImageSet {
    let spec: DatasetSpec = tree.to_str().unwrap().parse().unwrap();
    let opts = LoadOptions {
        preprocess: Some(Preprocess::new(48, 40, Filter::Bilinear).unwrap()),
        cache: true,
        ..Default::default()
    };
    data::load(&spec, &opts).unwrap()
}

fn cache_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn cache_is_written_read_and_never_trusted_when_wrong() {
    let cache = tmp_dir("cache_dir");
    std::env::set_var("SEMCON_CACHE_DIR", &cache);
    let tree = tmp_dir("cache_tree");
    copy_dir(&dataset_fixture("imagenet_like").join("tree"), &tree);

    let fresh = load(&tree);
    let files = cache_files(&cache);
    assert_eq!(
        files.len(),
        1,
        "one cache file after the first read: {files:?}"
    );
    let file = &files[0];
    let header = 8 + 4 + 8 * 5;
    let n = fresh.len();
    assert_eq!(
        std::fs::metadata(file).unwrap().len() as usize,
        header + n * 4 + n * 3 * 40 * 40
    );

    // The second read comes from the cache: alter one pixel there (same
    // size) and it shows.
    let mut bytes = std::fs::read(file).unwrap();
    let px = header + n * 4;
    bytes[px] ^= 0xFF;
    std::fs::write(file, &bytes).unwrap();
    let cached = load(&tree);
    assert_eq!(cached.labels, fresh.labels);
    assert_ne!(
        cached.data[0], fresh.data[0],
        "the second read did not use the cache"
    );
    assert_eq!(cached.data[1..], fresh.data[1..]);

    // Truncated: ignored and rebuilt.
    std::fs::write(file, &bytes[..bytes.len() - 7]).unwrap();
    assert_eq!(load(&tree).data, fresh.data);
    assert_eq!(std::fs::metadata(file).unwrap().len() as usize, bytes.len());

    // Another version: ignored and rebuilt.
    let mut other = std::fs::read(file).unwrap();
    other[8] = other[8].wrapping_add(1);
    std::fs::write(file, &other).unwrap();
    assert_eq!(load(&tree).data, fresh.data);
    assert_eq!(std::fs::read(file).unwrap()[8], bytes[8]);

    // A changed folder (one file removed) is another cache; its numbers are its own.
    std::fs::remove_file(tree.join("n01440764/a_q75.jpg")).unwrap();
    let smaller = load(&tree);
    assert_eq!(smaller.len(), n - 1);
    assert_eq!(cache_files(&cache).len(), 2);

    // A cache directory that cannot be written: the folder still loads, with a notice.
    let r = semcon_env(
        [
            "perturb",
            "-d",
            tree.to_str().unwrap(),
            "--resize",
            "48",
            "--crop",
            "40",
            "--perturb",
            "hue",
            "--level",
            "1",
            "--out",
            tmp_dir("cache_out").join("p.npy").to_str().unwrap(),
        ],
        &[("SEMCON_CACHE_DIR", "/dev/null/semcon")],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("working without it"), "{}", r.stderr);
}
