#!/usr/bin/env python3
"""Writes assets/imagenet_classes.tsv: the 1,000 ImageNet-1k classes in
their standard index order, `wnid<TAB>name`. The wnids come from timm's
`timm/data/_info/imagenet_synsets.txt` (Apache-2.0; read from the wheel, no
install needed), the names from torchvision's pretrained weights
(`ResNet50_Weights.IMAGENET1K_V1.meta["categories"]`, BSD-3-Clause). The
index order is the sorted wnids, which is also what `ImageFolder` gives a
folder of the 1,000 wnids.

    pip download timm --no-deps -d /tmp/timm && python3 scripts/make_imagenet_classes.py /tmp/timm/timm-*.whl
"""
import os, sys, zipfile
from torchvision.models import ResNet50_Weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
wnids = zipfile.ZipFile(sys.argv[1]).read("timm/data/_info/imagenet_synsets.txt").decode().split()
names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
assert len(wnids) == len(names) == 1000 and wnids == sorted(wnids)
out = os.path.join(ROOT, "assets", "imagenet_classes.tsv")
with open(out + ".tmp", "w") as f:
    for w, n in zip(wnids, names):
        f.write(f"{w}\t{n}\n")
os.replace(out + ".tmp", out)
print(out)
