#!/usr/bin/env bash
# Builds and runs one fuzz target for SECONDS (default 60) on stable Rust:
#   scripts/fuzz.sh TARGET [SECONDS] [extra libFuzzer flags]
#   scripts/fuzz.sh list          # the targets
# Targets are semcon's readers of files it did not write (src/fuzz.rs):
# idx, cifar, npy, npz, image, safetensors, pth, pickle, sidecar.
# Needs cargo-fuzz (installed from crates.io on first use) and a C++
# compiler (libFuzzer is built from the libfuzzer-sys crate); `-s none`
# because sanitizers need nightly. The run starts from the seed corpus
# tests/fixtures/fuzz/TARGET (regenerate with scripts/fuzz_seeds.py) and
# grows fuzz/corpus/TARGET; a crash, hang (>10 s) or out-of-memory (>2 GB)
# input lands in fuzz/artifacts/TARGET/. Copy it into
# tests/fixtures/fuzz/TARGET/ once fixed: `cargo test` replays that folder.
# The last lines printed are libFuzzer's final statistics
# (stat::number_of_executed_units = executions).
set -euo pipefail
cd "$(dirname "$0")/.."
targets="idx cifar npy npz image safetensors pth pickle sidecar"
target=${1:?usage: scripts/fuzz.sh TARGET [SECONDS] (targets: $targets)}
if [ "$target" = list ]; then echo "$targets"; exit 0; fi
case " $targets " in *" $target "*) ;; *) echo "unknown target '$target' (known: $targets)" >&2; exit 2;; esac
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
# -a: debug assertions, so that arithmetic overflow is a crash too.
cargo fuzz build -s none -a --fuzz-dir fuzz "$target"
exec cargo fuzz run -s none -a --fuzz-dir fuzz "$target" \
  "fuzz/corpus/$target" "tests/fixtures/fuzz/$target" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -close_fd_mask=3 -print_final_stats=1 \
  -artifact_prefix="fuzz/artifacts/$target/" "$@"
