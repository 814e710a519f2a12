#!/usr/bin/env bash
# semcon (CUDA build) beside PyTorch on the same GPU, in one command:
#   SEMCON=.gpu/bin/semcon bench/gpu.sh
# resnet18 (cifar stem, width 64, 100 classes) logits at batch 256, strict fp32 and
# TF32 on both sides (PyTorch's default allows TF32 in cuDNN convolutions); forward+backward
# w.r.t. the input (one PGD step; PGD-10 = 10 of them + 1 forward); k* for
# 10,000 x 100 and 50,000 x 1,000 features (semcon: the whole `semcon kstar`
# process incl. reading the file and CUDA start-up, and its in-process search
# time as it reports it; PyTorch: torch.cdist blocks, in memory); then resnext50_32x4d,
# vit_b_16, efficientnet_b0, convnext_tiny (bench/families.sh). Prints semcon/PyTorch ratios (> 1 = semcon faster).
set -euo pipefail
cd "$(dirname "$0")/.."
SEMCON=${SEMCON:-.gpu/bin/semcon}
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
B=(bench --device cuda --batch 256 --warmup 3 --iters 20 --backward --json)
S=$("$SEMCON" "${B[@]}")                        # cuDNN network, strict fp32
ST=$(SEMCON_TF32=1 "$SEMCON" "${B[@]}")         # cuDNN network, TF32 allowed
SG=$(SEMCON_NO_FUSED=1 "$SEMCON" "${B[@]}")     # candle's graph + autograd (for reference)
P=$("$PY" bench/infer_torch.py --device cuda --batch 256 --warmup 3 --iters 20 --backward --json)
PT=$("$PY" bench/infer_torch.py --device cuda --batch 256 --warmup 3 --iters 20 --backward --json --tf32)
echo "semcon fp32:       $S"
echo "semcon tf32:       $ST"
echo "semcon graph:      $SG"
echo "pytorch fp32:      $P"
echo "pytorch tf32:      $PT"
"$PY" - "$S" "$ST" "$SG" "$P" "$PT" <<'PYEOF'
import json, sys
s, st, sg, p, pt = (json.loads(v) for v in sys.argv[1:6])
ips = lambda r, key: r["batch"] / r[f"{key}_s"]
for key, name in (("forward", "inference"), ("fwd_bwd", "PGD step (fwd+bwd)")):
    a, at, ag, b, c = (ips(r, key) for r in (s, st, sg, p, pt))
    print(f"{name:20s} images/s: semcon fp32 {a:9.0f} vs pytorch fp32 {b:9.0f}: {a / b:.2f}x | "
          f"semcon tf32 {at:9.0f} vs pytorch default (tf32) {c:9.0f}: {at / c:.2f}x | candle graph {ag:8.0f}")
PYEOF
T=$(mktemp -d)
for spec in "10000 100 100" "50000 1000 100"; do
  set -- $spec
  "$PY" - "$T/f.npz" "$1" "$2" "$3" <<'PYEOF'
import sys, numpy as np
out, n, d, c = sys.argv[1], *map(int, sys.argv[2:5])
rng = np.random.default_rng(0)
y = rng.integers(0, c, n)
x = (rng.normal(size=(c, d))[y] * 2 + rng.normal(size=(n, d))).astype(np.float32)
np.savez(out, features=x, labels=y.astype(np.int64))
PYEOF
  "$SEMCON" kstar --features "$T/f.npz" --device cuda --format json >/dev/null 2>&1  # warm-up (JIT cache)
  t0=$(date +%s.%N); "$SEMCON" kstar --features "$T/f.npz" --device cuda --out "$T/k.npy" --format json >/dev/null 2>"$T/err"; t1=$(date +%s.%N)
  # the search alone, in process, best of 3 after a warm-up run (as the PyTorch side is timed)
  "$SEMCON" kstar --features "$T/f.npz" --device cuda --repeat 3 --format json >/dev/null 2>"$T/err3"
  grep "k\* search" "$T/err3" || true
  P=$("$PY" bench/kstar_torch.py "$T/f.npz")
  "$PY" - "$t0" "$t1" "$P" "$T/k.npy" "$T/f.npz.torch_k.npy" "$1" "$2" "$T/err3" <<'PYEOF'
import json, re, sys, numpy as np
t0, t1, p = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
same = int((np.load(sys.argv[4]) == np.load(sys.argv[5])).sum())
s = t1 - t0
m = re.search(r": ([0-9.]+) s \(best", open(sys.argv[8]).read())
inproc = float(m.group(1)) if m else float("nan")
print(f"k* {sys.argv[6]}x{sys.argv[7]}: semcon search {inproc:.4f} s (features in host memory, best of 3) | torch.cdist "
      f"{p['seconds_from_host']:.4f} s from host memory: {p['seconds_from_host'] / inproc:.2f}x, {p['seconds']:.4f} s with the "
      f"features already on the GPU: {p['seconds'] / inproc:.2f}x | semcon whole process {s:.3f} s | identical k*: {same}/{sys.argv[6]}")
PYEOF
done
# The families beyond ResNet (candle's CUDA graph) beside PyTorch eager, strict fp32, batch 32 at 224 px.
DEVICE=cuda SEMCON="$SEMCON" PYTHON="$PY" ITERS=${ITERS:-10} bench/families.sh 8
