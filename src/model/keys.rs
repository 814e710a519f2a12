//! State-dict key names: the prefix a wrapper adds to every key
//! (DataParallel's `module.`, torch.compile's `_orig_mod.`, PyTorch
//! Lightning's `model.`, any `NAME.`, and their combinations), recognised
//! from where each family's first and last layers sit.

use std::collections::HashSet;

/// The first and last layer of each family semcon loads, as torchvision
/// names them (a new family adds its pair here).
pub const ANCHORS: &[(&str, &str)] = &[
    ("conv1.weight", "fc.weight"),
    ("conv_proj.weight", "heads.head.weight"),
    ("features.0.0.weight", "classifier.1.weight"),
    ("features.0.0.weight", "classifier.2.weight"),
];

/// The wrapper prefix of `names` (empty when none): the shortest prefix
/// under which some family's first and last layers both sit.
pub fn wrapper_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: HashSet<&str> = names.into_iter().collect();
    ANCHORS
        .iter()
        .flat_map(|(first, last)| {
            names
                .iter()
                .filter_map(move |k| k.strip_suffix(first))
                .filter(|p| p.is_empty() || p.ends_with('.'))
                .filter(|p| names.contains(format!("{p}{last}").as_str()))
                .collect::<Vec<_>>()
        })
        .min_by_key(|p| p.len())
        .unwrap_or("")
        .to_string()
}
