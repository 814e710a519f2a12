//! The 1,000 ImageNet-1k classes shipped with semcon
//! (`assets/imagenet_classes.tsv`, `scripts/make_imagenet_classes.py`):
//! each class's WordNet id and the name torchvision's pretrained weights
//! carry, in the standard index order (the sorted wnids, as `ImageFolder`
//! numbers a folder of all 1,000).

use std::sync::OnceLock;

const TABLE: &str = include_str!("../../assets/imagenet_classes.tsv");

fn table() -> &'static Vec<(&'static str, &'static str)> {
    static T: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    T.get_or_init(|| TABLE.lines().filter_map(|l| l.split_once('\t')).collect())
}

/// The ImageNet-1k index of a wnid (`n01440764` -> 0).
pub fn index(wnid: &str) -> Option<usize> {
    table().binary_search_by(|(w, _)| w.cmp(&wnid)).ok()
}

/// The 1,000 human-readable names, by index.
pub fn names() -> Vec<String> {
    table().iter().map(|(_, n)| n.to_string()).collect()
}
