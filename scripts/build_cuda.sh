#!/usr/bin/env bash
# Builds the CUDA binary (and the GPU test binary, tests/gpu.rs) on a machine
# without a GPU (no system CUDA needed) and packs them for a GPU machine. Wraps
# ../shared/gpu/build-cuda.sh when present (PyPI CUDA 13.0 wheels + cuDNN + a
# generated libcuda stub), else expects nvcc on PATH.
#   scripts/build_cuda.sh   -> .gpu/bin/semcon, .gpu/bin/gpu_tests
#                              (and .gpuc/*.xz: stripped + xz, ~12 MB each, to carry)
# CARGO_FEATURES defaults to "cuda,cudnn" (cuDNN: the GPU network of src/model/gpu.rs).
# On the GPU machine:
#   P=$(python3 -c 'import nvidia,os;print(list(nvidia.__path__)[0])')
#   export LD_LIBRARY_PATH=$P/cu13/lib:$P/cudnn/lib:$LD_LIBRARY_PATH CUDA_CACHE_PATH=/tmp/cuda-jit-cache
#   scripts/gpu_check.sh        (unpacks .gpuc/ when .gpu/ is absent)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_FEATURES=${CARGO_FEATURES:-cuda,cudnn}
VENV=${CUDA_VENV:-/tmp/cu13venv}
if [ -x ../shared/gpu/build-cuda.sh ]; then
  ../shared/gpu/build-cuda.sh semcon
  CU=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
  export PATH="$CU/bin:$PATH" CUDA_HOME="$CU" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CUDARC_CUDA_VERSION=13000
else
  cargo build --release --features "$CARGO_FEATURES" --target-dir target/cuda --bin semcon
  mkdir -p .gpu/bin && cp target/cuda/release/semcon .gpu/bin/semcon
fi
# The GPU tests, same features and profile (reuses the build above).
T=$(cargo test --release --features "$CARGO_FEATURES" --target-dir target/cuda --test gpu --no-run \
      --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == "gpu": print(m["executable"])' | tail -1)
test -n "$T" && cp "$T" .gpu/bin/gpu_tests
mkdir -p .gpuc
for b in semcon gpu_tests; do
  strip -o .gpuc/$b .gpu/bin/$b
  xz -T0 -6 -f .gpuc/$b
done
ls -la .gpu/bin .gpuc
