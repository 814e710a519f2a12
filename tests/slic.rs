//! SLIC superpixels (`src/explain/slic.rs`) against scikit-image's
//! `slic` with its defaults (tests/fixtures/make_slic.py): three RGB photos
//! and a grayscale one at 96x96, 120x160, 64x64 and 224x224, two settings
//! of `n_segments` / `compactness` for some (one with a segment that
//! empties and a component the connectivity search truncates); every
//! pixel's label must equal skimage's (minus one) exactly, in every case.

mod common;

use common::{fixture, read_npz, tensor_f32};
use semcon::explain::slic::{slic, SlicConfig};

struct Case {
    name: String,
    pixels: Vec<f32>,
    dims: (usize, usize, usize),
    cfg: SlicConfig,
    count: usize,
    labels: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let npz = read_npz(&fixture("explain").join("slic.npz"));
    let n = tensor_f32(&npz["n_cases"])[0] as usize;
    assert!(n >= 6, "{n} cases");
    (0..n)
        .map(|i| {
            let p = tensor_f32(&npz[&format!("case{i}_params")]);
            let image = &npz[&format!("image{}", p[0] as usize)];
            let (c, h, w) = image.dims3().unwrap();
            let labels = tensor_f32(&npz[&format!("case{i}_labels")])
                .into_iter()
                .map(|v| v as u32)
                .collect();
            Case {
                name: format!(
                    "case {i} ({c}x{h}x{w}, n_segments {}, compactness {})",
                    p[1], p[2]
                ),
                pixels: tensor_f32(image),
                dims: (c, h, w),
                cfg: SlicConfig {
                    n_segments: p[1] as usize,
                    compactness: p[2] as f64,
                    ..SlicConfig::default()
                },
                count: p[3] as usize,
                labels,
            }
        })
        .collect()
}

fn run(case: &Case, cfg: &SlicConfig) -> (Vec<u32>, usize) {
    let (c, h, w) = case.dims;
    slic(&case.pixels, c, h, w, cfg)
}

fn differing(a: &[u32], b: &[u32]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
fn labels_equal_scikit_image() {
    let cases = cases();
    assert!(cases.iter().any(|c| c.dims.0 == 1) && cases.iter().any(|c| c.dims.0 == 3));
    let mut failures = Vec::new();
    for case in &cases {
        let (labels, count) = run(case, &case.cfg);
        let off = differing(&labels, &case.labels);
        if off > 0 || count != case.count {
            failures.push(format!(
                "{}: {off} of {} pixels differ, {count} segments (skimage {})",
                case.name,
                labels.len(),
                case.count
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The comparison above can fail: other settings give other labels.
#[test]
fn other_settings_give_other_labels() {
    for case in cases() {
        let cfg = SlicConfig {
            compactness: case.cfg.compactness * 1.5,
            ..case.cfg
        };
        let (labels, _) = run(&case, &cfg);
        assert!(
            differing(&labels, &case.labels) > 0,
            "{}: compactness x1.5 gives the same labels",
            case.name
        );
        let cfg = SlicConfig {
            max_num_iter: 2,
            ..case.cfg
        };
        let (labels, _) = run(&case, &cfg);
        assert!(
            differing(&labels, &case.labels) > 0,
            "{}: two iterations give the same labels",
            case.name
        );
    }
}

#[test]
fn labels_are_consecutive_and_connected() {
    for case in cases() {
        let (_, h, w) = case.dims;
        let (labels, count) = run(&case, &case.cfg);
        let mut seen = vec![false; count];
        for &l in &labels {
            seen[l as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{}: a label unused", case.name);
        // Each segment is one 4-connected component (skimage's enforcement
        // merges small pieces into a neighbour, so this holds here).
        let mut comp = vec![usize::MAX; h * w];
        let mut comps = 0;
        for p in 0..h * w {
            if comp[p] != usize::MAX {
                continue;
            }
            let mut stack = vec![p];
            comp[p] = comps;
            while let Some(q) = stack.pop() {
                let (y, x) = (q / w, q % w);
                let ns = [
                    (x + 1 < w).then(|| q + 1),
                    (x > 0).then(|| q - 1),
                    (y + 1 < h).then(|| q + w),
                    (y > 0).then(|| q - w),
                ];
                for r in ns.into_iter().flatten() {
                    if comp[r] == usize::MAX && labels[r] == labels[q] {
                        comp[r] = comps;
                        stack.push(r);
                    }
                }
            }
            comps += 1;
        }
        assert_eq!(comps, count, "{}: components vs segments", case.name);
    }
}
