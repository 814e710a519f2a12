#!/usr/bin/env bash
# Integrated Gradients (50 Gauss-Legendre steps, zero baseline, convergence
# delta), semcon vs Captum on the CPU, same threads, same weights, in the
# same run:
#   - 256 Fashion-MNIST-sized images (28 px) on each of the four shipped models;
#   - 8 images at 224 px on a torchvision ResNet-50 (seeded random weights,
#     written by PyTorch, loaded by semcon).
#   bench/explain.sh [THREADS]        (ITERS, SKIP_RESNET50=1 override)
# Random images in [0,1] (the time does not depend on their content); each
# image explained for the label i % classes. PYTHON selects the interpreter
# (default: /tmp/venv/bin/python if present, else python3); needs torch,
# torchvision, captum, safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${1:-2}"
I=${ITERS:-3}
PY="${PYTHON:-$( [ -x /tmp/venv/bin/python ] && echo /tmp/venv/bin/python || echo python3 )}"
if [ -z "${SEMCON:-}" ]; then cargo build --release --quiet; SEMCON=./target/release/semcon; fi
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
echo "$(date -u +%F) cpu, $(nproc) cores, $T threads, IG 50 steps, mean of $I iterations"
ratio() {
  "$PY" - "$1" "$2" "$3" <<'PYEOF'
import json, sys
name, s, p = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ws, wp = s["explain_s"], p["explain_s"]
print(f"{name:<30} semcon {s['batch'] / ws:8.2f} img/s, captum {p['batch'] / wp:8.2f} img/s, "
      f"ratio {wp / ws:.2f}x (CPU s/batch {s['explain_cpu_s']:.1f} vs {p['explain_cpu_s']:.1f})")
PYEOF
}
for m in standard continuity adv adv-continuity; do
  P=$(OMP_NUM_THREADS="$T" "$PY" bench/explain_captum.py --shipped "checkpoints/$m" \
        --batch 256 --size 28 --threads "$T" --iters "$I")
  S=$("$SEMCON" bench --checkpoint "checkpoints/$m.safetensors" --size 28 --batch 256 \
        --threads "$T" --iters "$I" --explain ig --json)
  ratio "$m (256 x 28 px)" "$S" "$P"
done
if [ -z "${SKIP_RESNET50:-}" ]; then
  P=$(OMP_NUM_THREADS="$T" "$PY" bench/explain_captum.py --torchvision resnet50 \
        --write "$D/resnet50.safetensors" --batch 8 --size 224 --threads "$T" --iters "$I")
  S=$("$SEMCON" bench --checkpoint "$D/resnet50.safetensors" --size 224 --batch 8 \
        --threads "$T" --iters "$I" --explain ig --json)
  ratio "resnet50 (8 x 224 px)" "$S" "$P"
fi
