#!/usr/bin/env bash
# Verifies a CUDA build of semcon on a GPU machine (see scripts/build_cuda.sh):
# the GPU tests (tests/gpu.rs: the cuDNN network's taps, loss, input gradient
# and PGD against PyTorch, and against candle's graph on odd sizes and gray
# input; the ViT, ConvNeXt and EfficientNet fixtures' taps and input
# gradient), `semcon features` on the PyTorch fixture models (every family), and `eval` of the
# embedded default on the GPU against the CPU (default paths on both: the
# cuDNN network there, the fused network here), with the GPU's name in "device";
# out-of-memory halving and `--device auto` with no visible GPU.
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
# wide_resnet_slim goes through the cuDNN network, resnext_slim (grouped) through candle's graph.
for n in resnet18_cifar resnet18_imagenet resnet50 wide_resnet_slim resnext_slim; do
  for layer in logits penultimate; do
    "$SEMCON" features -c tests/fixtures/models/$n.safetensors --input tests/fixtures/models/${n}_input.npy \
      --layer $layer --out "$T/$n-$layer.npz" --device cuda || fail=1
    "$PY" scripts/compare_npy.py "$T/$n-$layer.npz" tests/fixtures/models/${n}_$layer.npy || fail=1
  done
done
# The families described as layers (ViT, ConvNeXt, EfficientNet: candle's CUDA graph), every tap;
# 5e-3: candle's CUDA convolutions and matmuls may run in TF32 (tests/gpu.rs says why).
for spec in vit_tiny:block1,block2 vit_prelogits:block1 convnext_slim:stage1,stage2,stage3 \
            efficientnet_slim:stage1,stage2,stage3,stage4; do
  n=${spec%%:*}; IFS=, read -ra stages <<< "${spec#*:}"
  for layer in "${stages[@]}" penultimate logits; do
    "$SEMCON" features -c tests/fixtures/models/$n.safetensors --input tests/fixtures/models/${n}_input.npy \
      --layer $layer --out "$T/$n-$layer.npz" --device cuda || fail=1
    "$PY" scripts/compare_npy.py "$T/$n-$layer.npz" tests/fixtures/models/${n}_taps.npz:$layer 5e-3 || fail=1
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
# Device out of memory: a batch far too big for the GPU (1000 images of 1024x1024 through
# the slim ResNet-50 fixture, PGD keeps every activation) is halved and retried, not fatal.
"$PY" -c "import numpy as np; r = np.random.default_rng(0)
np.savez('$T/big.npz', x=r.integers(0, 256, (1000, 1024, 1024, 3), dtype=np.uint8), y=r.integers(0, 5, 1000))"
"$SEMCON" eval -c tests/fixtures/models/resnet50.safetensors --dataset "$T/big.npz" --perturb none \
  --pgd 8/255 --batch 1000 --device cuda --format json > "$T/oom.json" 2> "$T/oom.err"
rc=$?; rm -f "$T/big.npz"; grep -m3 -i 'memory' "$T/oom.err"
if [ $rc = 0 ] && grep -q 'device out of memory; retrying with batch' "$T/oom.err" \
   && grep -q '"pgd"' "$T/oom.json"; then echo "ok   out-of-memory halving (eval + PGD, cuDNN)"
else echo "FAIL out-of-memory halving (rc $rc)"; tail -5 "$T/oom.err"; fail=1; fi
# A driver but no visible GPU: `auto` says so in one line and runs on the CPU.
CUDA_VISIBLE_DEVICES= "$SEMCON" eval --samples 100 --perturb none --device auto --format json \
  > "$T/novis.json" 2> "$T/novis.err"
rc=$?; cat "$T/novis.err"
if [ $rc = 0 ] && grep -q '^notice: no usable GPU.*running on the CPU' "$T/novis.err" \
   && grep -q '"device": "cpu' "$T/novis.json"; then echo "ok   auto without a visible GPU -> CPU"
else echo "FAIL auto without a visible GPU (rc $rc)"; fail=1; fi
[ $fail = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit $fail
