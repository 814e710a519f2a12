#!/usr/bin/env bash
# Reproduces the four shipped checkpoints (checkpoints/*.safetensors + sidecars):
# ResNet-18 (cifar stem, width 8) on the colour-shift Fashion-MNIST training
# split (95% red backgrounds), one per variant of the semantic-continuity paper.
#
#   scripts/train_shipped.sh                 # builds semcon (release) and trains on --device auto
#   SEMCON=.gpu/bin/semcon DEVICE=cuda scripts/train_shipped.sh   # a prebuilt (CUDA) binary
#
# Needs the Fashion-MNIST training set from Debian's dataset-fashion-mnist
# package (MIT licence); installed here when missing. FMNIST_DIR overrides its path.
# Same binary + same device + same seed gives the same weights on the CPU; GPU
# kernels may reorder float sums, so CUDA runs reproduce to float tolerance.
set -euo pipefail
cd "$(dirname "$0")/.."
FMNIST_DIR=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  apt-get install -y dataset-fashion-mnist
fi
if [ -z "${SEMCON:-}" ]; then
  cargo build --release --locked
  SEMCON=target/release/semcon
fi
DEVICE=${DEVICE:-auto}
OUT=${OUT:-checkpoints}
EPOCHS=${EPOCHS:-5}
mkdir -p "$OUT"
for variant in standard continuity adv adv-continuity; do
  "$SEMCON" train --dataset "$FMNIST_DIR:colour" --split train \
    --arch resnet18 --stem cifar --width 8 --variant "$variant" --alpha 1.0 \
    --epochs "$EPOCHS" --batch 128 --lr 2e-3 --seed 0 \
    --pgd-eps 8/255 --pgd-step 2/255 --pgd-iters 5 \
    --eval-dataset builtin:fashion-mnist:colour \
    --device "$DEVICE" --out "$OUT/$variant.safetensors"
done
ls -la "$OUT"
