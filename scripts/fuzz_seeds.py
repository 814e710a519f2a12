#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fixtures/fuzz/TARGET/
from the project's own fixtures (standard library only; run from anywhere).

The files land beside the regression inputs that fuzzing found (named
crash-*, oom-*, timeout-*), and `cargo test` replays all of them
(tests/hostile.rs). scripts/fuzz.sh starts each target from this corpus.
"""
import json
import pathlib
import shutil
import struct
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "fuzz"


def seed(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def copy(target, path):
    seed(target, path.name, path.read_bytes())


def tiny_resnet18_safetensors(width=2, in_ch=1, classes=3):
    """A ResNet-18 state dict (torchvision names) at `width` channels, as
    safetensors: conv weights 0.1, BatchNorm identity."""
    shapes = {"conv1.weight": [width, in_ch, 3, 3]}

    def bn(p, c):
        for k in ["weight", "bias", "running_mean", "running_var"]:
            shapes[f"{p}.{k}"] = [c]

    bn("bn1", width)
    cin = width
    for s in range(4):
        c = width << s
        for b in range(2):
            p = f"layer{s + 1}.{b}"
            shapes[f"{p}.conv1.weight"] = [c, cin if b == 0 else c, 3, 3]
            bn(f"{p}.bn1", c)
            shapes[f"{p}.conv2.weight"] = [c, c, 3, 3]
            bn(f"{p}.bn2", c)
            if b == 0 and (s > 0):
                shapes[f"{p}.downsample.0.weight"] = [c, cin, 1, 1]
                bn(f"{p}.downsample.1", c)
        cin = c
    shapes["fc.weight"] = [classes, cin]
    shapes["fc.bias"] = [classes]
    header, body = {}, b""
    for k, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        v = 1.0 if k.endswith(("running_var", "bn1.weight", "bn2.weight", ".1.weight")) else 0.1
        if k.endswith(("bias", "running_mean")):
            v = 0.0
        data = struct.pack(f"<{n}f", *([v] * n))
        header[k] = {"dtype": "F32", "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + body


def main():
    datasets = FIX / "datasets"
    for p in sorted((datasets / "idx").iterdir()):
        copy("idx", p)
    copy("cifar", datasets / "cifar10" / "data_batch_1.bin")
    for p in sorted((datasets / "npz").glob("*.npz")):
        copy("npz", p)
    for p in sorted(FIX.rglob("*.npy")):
        if p.stat().st_size <= 16384 and "fuzz" not in p.parts:
            copy("npy", p)
    for p in sorted((datasets / "folder").rglob("*")):
        if p.is_file():
            seed("image", f"{p.parent.name}-{p.name}", p.read_bytes())
    models = FIX / "models"
    seed("safetensors", "resnet18_w2.safetensors", tiny_resnet18_safetensors())
    for name in ["tiny.pth", "tiny_lightning.ckpt", "tiny_module.pth", "tiny_os_system.pth", "tiny_legacy.pth"]:
        copy("pth", models / name)
        try:
            with zipfile.ZipFile(models / name) as z:
                pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
                seed("pickle", name.replace(".", "_") + ".pkl", z.read(pkl))
        except zipfile.BadZipFile:
            pass
    copy("sidecar", models / "resnet18_cifar.json")
    seed("sidecar", "full.json", json.dumps({
        "mean": [0.5], "std": [0.25], "input_size": [28, 28],
        "class_names": ["a", "b", "c"], "arch": "resnet18",
    }).encode())


if __name__ == "__main__":
    main()
