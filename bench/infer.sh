#!/usr/bin/env bash
# Inference throughput of semcon vs PyTorch eager on the CPU, same model and threads.
#   bench/infer.sh [THREADS] [extra `semcon bench` / infer_torch.py flags, e.g. --backward --iters 5]
# PYTHON selects the interpreter (default: /tmp/venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
T="${1:-2}"; shift || true
PY="${PYTHON:-$( [ -x /tmp/venv/bin/python ] && echo /tmp/venv/bin/python || echo python3 )}"
cargo build --release --quiet
S=$(./target/release/semcon bench --threads "$T" --json "$@")
P=$(OMP_NUM_THREADS="$T" "$PY" bench/infer_torch.py --threads "$T" --json "$@")
echo "semcon:  $S"
echo "pytorch: $P"
"$PY" - "$S" "$P" <<'PYEOF'
import json, sys
s, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
# CPU seconds per batch show how much of the cores each got (other load on the machine).
for key, name in (("forward", "forward"), ("fwd_bwd", "forward+backward")):
    if f"{key}_s" in s and f"{key}_s" in p:
        ws, wp = s[f"{key}_s"], p[f"{key}_s"]
        cs, cp = s.get(f"{key}_cpu_s", 0), p.get(f"{key}_cpu_s", 0)
        print(f"{name} images/s: semcon {s['batch'] / ws:.1f}, pytorch {p['batch'] / wp:.1f}, "
              f"ratio semcon/pytorch {wp / ws:.2f}x ({s['threads']} threads; CPU s/batch semcon {cs:.2f}, pytorch {cp:.2f})")
PYEOF
