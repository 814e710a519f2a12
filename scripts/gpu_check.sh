#!/usr/bin/env bash
# Verifies a CUDA build of semcon on a GPU machine (see scripts/build_cuda.sh):
# the GPU tests (tests/gpu.rs: the cuDNN network's taps, loss, input gradient
# and PGD against PyTorch, and against candle's graph on odd sizes and gray
# input), `semcon features` on the PyTorch fixture models, and `eval` of the
# embedded default on the GPU against the CPU (default paths on both: the
# cuDNN network there, the fused network here), with the GPU's name in "device".
#   scripts/gpu_check.sh          (SEMCON=... to use another binary)
set -uo pipefail
cd "$(dirname "$0")/.."
for b in semcon gpu_tests; do
  if [ ! -x .gpu/bin/$b ] && [ -f .gpuc/$b.xz ]; then
    mkdir -p .gpu/bin && xz -dc .gpuc/$b.xz > .gpu/bin/$b && chmod +x .gpu/bin/$b
  fi
done
SEMCON=${SEMCON:-.gpu/bin/semcon}
PY=${PYTHON:-python3}
T=$(mktemp -d)
fail=0
if [ -x .gpu/bin/gpu_tests ]; then
  SEMCON_TEST_ROOT=$PWD .gpu/bin/gpu_tests --test-threads 1 || fail=1
else
  echo "no .gpu/bin/gpu_tests (scripts/build_cuda.sh builds it)"; fail=1
fi
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
t0=$(date +%s.%N); "$SEMCON" "${ARGS[@]}" --device cuda > "$T/gpu.json" || fail=1; t1=$(date +%s.%N)
SEMCON_TF32=1 "$SEMCON" "${ARGS[@]}" --device cuda > "$T/gpu_tf32.json" || fail=1
t2=$(date +%s.%N); "$SEMCON" "${ARGS[@]}" --device cpu > "$T/cpu.json" || fail=1; t3=$(date +%s.%N)
"$PY" -c "print(f\"eval wall time: gpu {$t1 - $t0:.1f} s, cpu ($(nproc) cores) {$t3 - $t2:.1f} s\")"
if [ -n "${OUT_DIR:-}" ]; then cp "$T"/*.json "$OUT_DIR/"; fi
"$PY" scripts/compare_eval.py "$T/cpu.json" "$T/gpu.json" "gpu (cudnn, fp32)" || fail=1
"$PY" scripts/compare_eval.py "$T/cpu.json" "$T/gpu_tf32.json" "gpu (cudnn, tf32; not a gate)" || true
[ $fail = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit $fail
