#!/usr/bin/env bash
# Verifies a CUDA build of semcon on a GPU machine (see scripts/build_cuda.sh):
# features of the PyTorch fixture models on the GPU match PyTorch, and `eval`
# of the embedded default gives the CPU's numbers (through candle's graph on
# both), and the GPU's name appears in the report's "device".
#   SEMCON=.gpu/bin/semcon scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
SEMCON=${SEMCON:-.gpu/bin/semcon}
PY=${PYTHON:-python3}
T=$(mktemp -d)
fail=0
for n in resnet18_cifar resnet18_imagenet resnet50; do
  for layer in logits penultimate; do
    "$SEMCON" features -c tests/fixtures/models/$n.safetensors --input tests/fixtures/models/${n}_input.npy \
      --layer $layer --out "$T/$n-$layer.npz" --device cuda || fail=1
    "$PY" scripts/compare_npy.py "$T/$n-$layer.npz" tests/fixtures/models/${n}_$layer.npy || fail=1
  done
done
# The README's results command (all perturbations added), on both devices.
ARGS=(eval --dataset builtin:fashion-mnist:colour-red --shift-dataset builtin:fashion-mnist:colour
      --samples ${SAMPLES:-2000} --perturb all --pgd 8/255 --kstar --format json)
"$SEMCON" "${ARGS[@]}" --device cuda > "$T/gpu.json" || fail=1
# The CPU side through candle's graph too (SEMCON_NO_FUSED): the same algorithm on
# both devices. (The CPU's default fused network matches the graph's accuracies,
# and its PGD to a few samples in 2,000: tests/model.rs, tests/metrics.rs.)
SEMCON_NO_FUSED=1 "$SEMCON" "${ARGS[@]}" --device cpu > "$T/cpu.json" || fail=1
if [ -n "${OUT_DIR:-}" ]; then cp "$T/gpu.json" "$OUT_DIR/eval_gpu.json"; cp "$T/cpu.json" "$OUT_DIR/eval_cpu.json"; fi
"$PY" - "$T/cpu.json" "$T/gpu.json" <<'PYEOF' || fail=1
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
n = cpu["samples"]; worst = 0; bad = []
for mc, mg in zip(cpu["models"], gpu["models"]):
    pairs = [("clean", mc["clean_accuracy"], mg["clean_accuracy"])]
    pairs += [(f'{a["name"]}:{a["level"]}', a["accuracy"], b["accuracy"]) for a, b in zip(mc["perturbations"], mg["perturbations"])]
    pairs += [(f'pgd {a["eps"]:.4f}', a["accuracy"], b["accuracy"]) for a, b in zip(mc["pgd"], mg["pgd"])]
    for name, a, b in pairs:
        d = round(abs(a - b) * n); worst = max(worst, d)
        if d > 1: bad.append(f'{mc["name"]} {name}: cpu {a} gpu {b}')
    for a, b in zip(mc["perturbations"], mg["perturbations"]):
        if abs(a["ds_mean"] - b["ds_mean"]) > 1e-3 * max(1, abs(a["ds_mean"])): bad.append(f'{mc["name"]} {a["name"]}:{a["level"]} DS {a["ds_mean"]} vs {b["ds_mean"]}')
print(f"eval cpu vs gpu: {len(cpu['models'])} models, largest accuracy difference {worst} sample(s); devices: {cpu['device']!r} / {gpu['device']!r}")
for b in bad: print("  MISMATCH", b)
sys.exit(1 if bad else 0)
PYEOF
[ $fail = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit $fail
