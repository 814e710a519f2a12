#!/usr/bin/env python3
"""Prints src/data/presets.rs's table: the evaluation preprocessing
(resize, crop, interpolation) of every torchvision weights of the families
semcon loads or will load, read from `weights.transforms()`.

    python3 scripts/make_presets.py   # needs torchvision
"""
import torchvision.models as M
from torchvision.models import get_model_weights, list_models

FAMILIES = ["resnet", "resnext", "wide_resnet", "vit", "efficientnet", "convnext"]
for name in list_models(module=M):
    if not any(name.startswith(p) for p in FAMILIES):
        continue
    W = get_model_weights(name)
    for w in W:
        t = w.transforms()
        if not hasattr(t, "crop_size"):
            continue
        interp = str(t.interpolation).split(".")[-1].capitalize()
        print(f'    ("{name}", "{w.name}", {t.resize_size[0]}, {t.crop_size[0]}, Filter::{interp}, {str(w == W.DEFAULT).lower()}),')
