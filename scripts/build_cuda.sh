#!/usr/bin/env bash
# Builds the CUDA binary (and the GPU test binary, tests/gpu.rs) on a machine
# without a GPU (no system CUDA needed) and packs them for a GPU machine. Wraps
# ../shared/gpu/build-cuda.sh when present (PyPI CUDA 13.0 wheels + cuDNN + a
# generated libcuda stub), else expects nvcc on PATH.
#   scripts/build_cuda.sh   -> .gpu/bin/semcon, .gpu/bin/gpu_tests
#                              (and .gpuc/*.xz: stripped + xz, ~12 MB each, to carry)
# CARGO_FEATURES defaults to "cuda,cudnn" (cuDNN: the GPU network of src/model/gpu.rs).
# The binary opens the CUDA libraries at run time (see below), so it also starts on a
# machine without the NVIDIA driver: `--device auto` then says why and uses the CPU
# (scripts/cuda_fallback_check.sh checks that here).
# On the GPU machine:
#   P=$(python3 -c 'import nvidia,os;print(list(nvidia.__path__)[0])')
#   export LD_LIBRARY_PATH=$P/cu13/lib:$P/cudnn/lib:$LD_LIBRARY_PATH CUDA_CACHE_PATH=/tmp/cuda-jit-cache
#   scripts/gpu_check.sh        (unpacks .gpuc/ when .gpu/ is absent)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_FEATURES=${CARGO_FEATURES:-cuda,cudnn}
VENV=${CUDA_VENV:-/tmp/cu13venv}

# candle-core 0.11 asks cudarc for `dynamic-linking`: such a binary names libcuda.so.1,
# libcublas, libcudnn, ... as loader dependencies and does not start at all where the
# NVIDIA driver is missing. Build against a copy of candle-core that asks for cudarc's
# `dynamic-loading` instead (its default): the libraries are opened when a GPU is first
# asked for, src/device.rs probes them first, and `--device auto` falls back to the CPU
# with a notice. The copy lives in target/cuda (ignored); Cargo.lock is put back after.
cargo fetch -q
CANDLE_VERSION=$(awk '/^name = "candle-core"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
CANDLE_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-"$CANDLE_VERSION" | head -1)
DL=$PWD/target/cuda/candle-core-dynamic-loading
rm -rf "$DL" && mkdir -p target/cuda && cp -r "$CANDLE_SRC" "$DL"
sed -i 's/"dynamic-linking"/"dynamic-loading"/' "$DL/Cargo.toml"
grep -q '"dynamic-loading"' "$DL/Cargo.toml"
cp Cargo.lock target/cuda/Cargo.lock.orig
trap 'cp target/cuda/Cargo.lock.orig Cargo.lock' EXIT
PATCH=(--config "patch.crates-io.candle-core.path=\"$DL\"")

# candle-kernels links the CUDA runtime (`-lcudart`, for kernels semcon does not call):
# resolve that name to the static runtime (it opens the driver itself at first use) through
# a linker script found first on the linker's LIBRARY_PATH, so libcudart is no loader
# dependency either.
if [ -x ../shared/gpu/build-cuda.sh ]; then
  CUDART=$(ls "$VENV"/lib/python3*/site-packages/nvidia/cu13/lib/libcudart_static.a 2>/dev/null | head -1 || true)
  if [ -z "$CUDART" ]; then  # first run: the wheels the shared recipe pins
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$(grep -o 'cuda-toolkit\[[^]]*\]==[0-9.]*' ../shared/gpu/build-cuda.sh | head -1)"
    CUDART=$(ls "$VENV"/lib/python3*/site-packages/nvidia/cu13/lib/libcudart_static.a | head -1)
  fi
else
  CUDART=$(find "${CUDA_HOME:-/usr/local/cuda}"/ -name libcudart_static.a 2>/dev/null | head -1)
fi
test -f "$CUDART"
mkdir -p target/cuda/link
echo "INPUT($CUDART)" > target/cuda/link/libcudart.so
export LIBRARY_PATH=$PWD/target/cuda/link${LIBRARY_PATH:+:$LIBRARY_PATH}

if [ -x ../shared/gpu/build-cuda.sh ]; then
  ../shared/gpu/build-cuda.sh semcon "${PATCH[@]}"
  CU=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
  export PATH="$CU/bin:$PATH" CUDA_HOME="$CU" CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CUDARC_CUDA_VERSION=13000
else
  cargo build --release --features "$CARGO_FEATURES" --target-dir target/cuda --bin semcon "${PATCH[@]}"
  mkdir -p .gpu/bin && cp target/cuda/release/semcon .gpu/bin/semcon
fi
# The GPU tests, same features and profile (reuses the build above).
T=$(cargo test --release --features "$CARGO_FEATURES" --target-dir target/cuda --test gpu --no-run \
      "${PATCH[@]}" --message-format=json 2>/dev/null |
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
# No CUDA library may be a loader dependency (else the binary cannot start without a GPU).
if readelf -d .gpu/bin/semcon | grep -E 'NEEDED.*(cuda|cublas|curand|nvrtc|cudnn)'; then
  echo "build_cuda.sh: the CUDA binary links CUDA libraries (dynamic-linking); expected dynamic loading" >&2
  exit 1
fi
ls -la .gpu/bin .gpuc
