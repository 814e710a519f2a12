#!/usr/bin/env bash
# Builds the CUDA binary on a machine without a GPU (no system CUDA needed) and
# packs it for a GPU machine. Wraps ../shared/gpu/build-cuda.sh when present
# (PyPI CUDA 13.0 wheels + a generated libcuda stub), else expects nvcc on PATH.
#   scripts/build_cuda.sh            -> .gpu/bin/semcon (and .gpuc/semcon.xz, stripped + xz)
# On the GPU machine:
#   P=$(python3 -c 'import nvidia,os;print(list(nvidia.__path__)[0])')
#   export LD_LIBRARY_PATH=$P/cu13/lib:$P/cudnn/lib:$LD_LIBRARY_PATH CUDA_CACHE_PATH=/tmp/cuda-jit-cache
#   xz -dc .gpuc/semcon.xz > semcon && chmod +x semcon && SEMCON=./semcon scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x ../shared/gpu/build-cuda.sh ]; then
  ../shared/gpu/build-cuda.sh semcon
else
  cargo build --release --features "${CARGO_FEATURES:-cuda}" --target-dir target/cuda --bin semcon
  mkdir -p .gpu/bin && cp target/cuda/release/semcon .gpu/bin/semcon
fi
mkdir -p .gpuc
strip -o .gpuc/semcon .gpu/bin/semcon
xz -T0 -6 -f .gpuc/semcon
ls -la .gpu/bin/semcon .gpuc/semcon.xz
