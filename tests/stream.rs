//! Image folders decoded in the background while they are read (the
//! explorer on a folder not yet cached, src/data/folder.rs `stream_decode`):
//! the same pixels as a plain read, the cache written when decoding ends,
//! a file that does not decode stops the reads past it with its error
//! (never zeros), and nothing is left in the cache directory. One test: it
//! sets SEMCON_CACHE_DIR for this process.

mod common;

use common::*;
use semcon::data::{self, DatasetSpec, ImageSet, LoadOptions};
use semcon::data::{preprocess::Preprocess, resample::Filter};
use std::path::Path;
use std::time::{Duration, Instant};

fn load(tree: &Path, stream: bool, cache: bool) -> ImageSet {
    let spec: DatasetSpec = tree.to_str().unwrap().parse().unwrap();
    let opts = LoadOptions {
        preprocess: Some(Preprocess::new(48, 40, Filter::Bilinear).unwrap()),
        cache,
        stream,
        ..Default::default()
    };
    data::load(&spec, &opts).unwrap()
}

/// Waits (at most 20 s) until `ok` holds.
fn eventually(what: &str, ok: impl Fn() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn folders_stream_while_decoded_and_stop_at_a_bad_file() {
    let cache = tmp_dir("stream_cache");
    std::env::set_var("SEMCON_CACHE_DIR", &cache);
    let tree = tmp_dir("stream_tree");
    copy_dir(&dataset_fixture("imagenet_like").join("tree"), &tree);
    let plain = load(&tree, false, false);
    let n = plain.len();
    assert!(n > 16, "more than the first chunk: {n}");

    // Streamed: returns before decoding ends (or just after, on a fast
    // machine), reads what a plain read gives, then the cache is written.
    let streamed = load(&tree, true, true);
    assert!(streamed.data.decoding().is_some(), "{:?}", streamed.data);
    assert_eq!(streamed.labels, plain.labels);
    assert_eq!(streamed.try_images(0, n).unwrap(), plain.images(0, n));
    eventually("the cache file is renamed into place", || {
        let v = dir_names(&cache);
        v.len() == 1 && !v[0].contains(".tmp")
    });
    assert_eq!(streamed.data.decoding(), Some((n, n)));
    drop(streamed);
    // The next read maps that cache: no decoding.
    let again = load(&tree, true, true);
    assert_eq!(again.data.decoding(), None);
    assert!(again.data.is_mapped());
    assert_eq!(again.data.to_f32(), plain.data.to_f32());
    drop(again);

    // A file that does not decode, the 15th in order (index 14, in the
    // first chunk): the images before it read, the reads past it fail
    // with its name, and no temporary file stays.
    let bad_tree = tmp_dir("stream_bad_tree");
    copy_dir(&dataset_fixture("imagenet_like").join("tree"), &bad_tree);
    let bad = bad_tree.join("n02102040/b_gray.jpg");
    std::fs::write(&bad, b"not a jpeg at all").unwrap();
    let s = load(&bad_tree, true, true);
    assert_eq!(s.len(), n, "the count is the file list's");
    assert_eq!(s.try_images(0, 14).unwrap(), plain.images(0, 14));
    for (a, b) in [(0, 15), (14, 15), (20, n)] {
        let e = s.try_images(a, b).unwrap_err().to_string();
        assert!(
            e.contains("b_gray.jpg") && e.contains("--skip-bad-images"),
            "{a}..{b}: {e}"
        );
    }
    // The same error through a batch, as the explorer's jobs read.
    let e = s
        .batch(10, 20, &candle_core::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("b_gray.jpg"), "{e}");
    drop(s);
    eventually("no temporary file left", || {
        dir_names(&cache).iter().all(|f| !f.contains(".tmp"))
    });
    assert_eq!(dir_names(&cache).len(), 1, "only the good folder's cache");

    // Without a cache directory: anonymous memory, the same pixels.
    let s = load(&tree, true, false);
    assert_eq!(s.try_images(0, n).unwrap(), plain.images(0, n));

    // --skip-bad-images changes the count as it goes: not streamed.
    let spec: DatasetSpec = bad_tree.to_str().unwrap().parse().unwrap();
    let s = data::load(
        &spec,
        &LoadOptions {
            preprocess: Some(Preprocess::new(48, 40, Filter::Bilinear).unwrap()),
            cache: false,
            stream: true,
            skip_bad_images: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.data.decoding(), None);
    assert_eq!(s.len(), n - 1);
}
