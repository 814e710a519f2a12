#!/usr/bin/env bash
# semcon vs PyTorch eager on the CPU for the families beyond ResNet:
# resnext50_32x4d, vit_b_16, efficientnet_b0, convnext_tiny at 224 px, batch
# 32, same threads, same weights (written by PyTorch, loaded by semcon), in
# the same run: forward, and forward + input gradient (a PGD step).
#   bench/families.sh [THREADS] [ARCH ...]       (BATCH, SIZE, ITERS override)
# PYTHON selects the interpreter (default: /tmp/venv/bin/python if present, else python3).
# On a GPU machine (no Rust there): DEVICE=cuda SEMCON=.gpu/bin/semcon bench/families.sh
# (strict fp32 on both sides; bench/gpu.sh runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
T="${1:-2}"; shift || true
ARCHS=("$@"); [ ${#ARCHS[@]} -gt 0 ] || ARCHS=(resnext50_32x4d vit_b_16 efficientnet_b0 convnext_tiny)
B=${BATCH:-32}; S=${SIZE:-224}; I=${ITERS:-3}
PY="${PYTHON:-$( [ -x /tmp/venv/bin/python ] && echo /tmp/venv/bin/python || echo python3 )}"
DEV=${DEVICE:-cpu}
if [ -z "${SEMCON:-}" ]; then cargo build --release --quiet; SEMCON=./target/release/semcon; fi
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
echo "$(date -u +%F) $DEV, $(nproc) cores, $T threads, batch $B, ${S}px, mean of $I iterations"
for arch in "${ARCHS[@]}"; do
  P=$(OMP_NUM_THREADS="$T" "$PY" bench/families_torch.py "$arch" "$D/$arch.safetensors" \
        --threads "$T" --batch "$B" --size "$S" --iters "$I" --device "$DEV")
  R=$("$SEMCON" bench --device "$DEV" --checkpoint "$D/$arch.safetensors" --threads "$T" \
        --batch "$B" --size "$S" --iters "$I" --backward --json)
  "$PY" - "$R" "$P" <<'PYEOF'
import json, sys
s, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for key, name in (("forward", "forward"), ("fwd_bwd", "forward+input grad")):
    ws, wp = s[f"{key}_s"], p[f"{key}_s"]
    print(f"{p['arch']:<16} {name:<19} semcon {s['batch'] / ws:7.1f} img/s ({s['path']}), "
          f"pytorch {p['batch'] / wp:7.1f} img/s, ratio {wp / ws:.2f}x "
          f"(CPU s/batch {s[f'{key}_cpu_s']:.1f} vs {p[f'{key}_cpu_s']:.1f})")
PYEOF
  rm -f "$D/$arch.safetensors"
done
