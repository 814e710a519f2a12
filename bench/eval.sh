#!/usr/bin/env bash
# Wall time of a full `semcon eval` of the embedded default (a measurement, not a test):
# 2,000 samples of the shipped Fashion-MNIST test set, the 4 colour perturbations and
# the 3 probes x 4 levels, PGD-10 at 3 eps values, k* on logits; one shipped model.
#   bench/eval.sh [CHECKPOINT] [THREADS]   (defaults: checkpoints/standard.safetensors, 2)
# SEMCON_NO_FUSED=1 times candle's graph/autograd path instead of the fused CPU network.
set -euo pipefail
cd "$(dirname "$0")/.."
CK="${1:-checkpoints/standard.safetensors}"
T="${2:-2}"
cargo build --release --quiet
WHICH="fused CPU network"; [ -n "${SEMCON_NO_FUSED:-}" ] && WHICH="candle graph/autograd (SEMCON_NO_FUSED)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
s=$(date +%s.%N)
RAYON_NUM_THREADS="$T" CANDLE_NUM_THREADS="$T" ./target/release/semcon eval -c "$CK" \
    --perturb colour --perturb probes --pgd 2/255,4/255,8/255 --kstar --samples 2000 \
    --format json --out /tmp/semcon-bench-eval.json >/dev/null
e=$(date +%s.%N)
echo "semcon eval ($CK, $T threads, $WHICH): $(awk "BEGIN{printf \"%.1f\", $e - $s}") s (target < 60 s)"
echo "report: /tmp/semcon-bench-eval.json"
