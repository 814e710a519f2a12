//! The decoded-image cache of image folders (src/data/cache.rs): written on
//! the first read, read on the next, rebuilt when it is truncated, from
//! another version or altered in size; a folder whose files change gets
//! another cache; a cache directory that cannot be written only costs a
//! notice. One test: it sets SEMCON_CACHE_DIR for this process.

mod common;

use common::*;
use semcon::data::{self, DatasetSpec, ImageSet, LoadOptions};
use semcon::data::{preprocess::Preprocess, resample::Filter};
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

#[test]
fn cache_is_written_read_and_never_trusted_when_wrong() {
    let cache = tmp_dir("cache_dir");
    std::env::set_var("SEMCON_CACHE_DIR", &cache);
    let tree = tmp_dir("cache_tree");
    copy_dir(&dataset_fixture("imagenet_like").join("tree"), &tree);

    let fresh = load(&tree);
    assert!(
        fresh.data.is_mapped(),
        "the pixels are mapped from the cache just written: {:?}",
        fresh.data
    );
    // Owned copies: the files are altered in place below (semcon never does).
    let fresh_px = fresh.data.to_f32().into_owned();
    // --samples on a folder whose whole list is cached: the same images as
    // the subset of the whole set, served from that cache (no new file).
    for (n, seed) in [(5, 1), (7, 2)] {
        let spec: DatasetSpec = tree.to_str().unwrap().parse().unwrap();
        let some = data::load(
            &spec,
            &LoadOptions {
                preprocess: Some(Preprocess::new(48, 40, Filter::Bilinear).unwrap()),
                cache: true,
                samples: Some(n),
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        let want = fresh.subset(n, seed);
        assert_eq!((&some.labels, &some.data), (&want.labels, &want.data));
        assert_eq!(dir_files(&cache).len(), 1, "{:?}", dir_files(&cache));
    }
    let files = dir_files(&cache);
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
        header + n * 3 * 40 * 40 + n * 4
    );

    // The second read comes from the cache: alter one pixel there (same
    // size) and it shows.
    let mut bytes = std::fs::read(file).unwrap();
    bytes[header] ^= 0xFF;
    std::fs::write(file, &bytes).unwrap();
    let cached = load(&tree);
    assert!(cached.data.is_mapped());
    assert_eq!(cached.labels, fresh.labels);
    let cached_px = cached.data.to_f32().into_owned();
    drop(cached);
    assert_ne!(
        cached_px[0], fresh_px[0],
        "the second read did not use the cache"
    );
    assert_eq!(cached_px[1..], fresh_px[1..]);
    // Labels come from the cache too: a changed label there is another
    // count than the folder's, so never trusted... but the same count with
    // a label altered is read as written.
    let mut relabelled = bytes.clone();
    let last = relabelled.len() - 4;
    relabelled[last] ^= 1;
    std::fs::write(file, &relabelled).unwrap();
    let l = load(&tree).labels;
    assert_eq!(l[..n - 1], fresh.labels[..n - 1]);
    assert_eq!(l[n - 1], fresh.labels[n - 1] ^ 1);

    // Truncated: ignored and rebuilt.
    std::fs::write(file, &bytes[..bytes.len() - 7]).unwrap();
    let rebuilt = load(&tree);
    assert_eq!(rebuilt.data.to_f32(), fresh_px);
    assert_eq!(rebuilt.labels, fresh.labels);
    drop(rebuilt);
    assert_eq!(std::fs::metadata(file).unwrap().len() as usize, bytes.len());

    // Another version: ignored and rebuilt.
    let mut other = std::fs::read(file).unwrap();
    other[8] = other[8].wrapping_add(1);
    std::fs::write(file, &other).unwrap();
    assert_eq!(load(&tree).data.to_f32(), fresh_px);
    assert_eq!(std::fs::read(file).unwrap()[8], bytes[8]);

    // Without the cache: the same pixels, uint8 in memory.
    let spec: DatasetSpec = tree.to_str().unwrap().parse().unwrap();
    let opts = LoadOptions {
        preprocess: Some(Preprocess::new(48, 40, Filter::Bilinear).unwrap()),
        cache: false,
        ..Default::default()
    };
    let memory = data::load(&spec, &opts).unwrap();
    assert!(!memory.data.is_mapped());
    assert_eq!(memory.data.to_f32(), fresh_px);
    assert_eq!(memory.labels, fresh.labels);
    // No temporary file is left behind.
    assert_eq!(dir_files(&cache).len(), 1, "{:?}", dir_files(&cache));

    // A changed folder (one file removed) is another cache; its numbers are its own.
    std::fs::remove_file(tree.join("n01440764/a_q75.jpg")).unwrap();
    let smaller = load(&tree);
    assert_eq!(smaller.len(), n - 1);
    assert_eq!(dir_files(&cache).len(), 2);

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
