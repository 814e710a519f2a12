#!/usr/bin/env python3
"""Benchmark: reading an ImageNet-like folder with torchvision's eval
preprocessing, semcon against torchvision, on the same cores in one run.

Makes (once, seeded) a folder of N JPEGs of 333-640 px in 100 class folders,
cut from the photographs scikit-image and scikit-learn ship (random crops,
sizes and qualities 75-95), then times

  torchvision: ImageFolder(root, Compose([Resize(256), CenterCrop(224),
               PILToTensor()])) through DataLoader(num_workers=W,
               batch_size=64), every batch consumed;
  semcon:      `semcon bench --load root --threads W --json` (decode + the
               same preprocessing on W threads, no cache; then writing the
               cache; then reading from it),

and prints images/s of each and the ratio: the median of --repeat runs,
alternating the two (this kind of shared machine varies by up to 2x from
run to run). `--semcon-simd` adds a build with `--features simd-jpeg`.

    cargo build --release
    python3 bench/imagefolder.py [--images 2000] [--workers 2] [--repeat 5] [--semcon target/release/semcon]
"""
import argparse, json, os, subprocess, tempfile, time
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(root, n, seed=0, classes=100):
    from skimage import data
    from sklearn.datasets import load_sample_images
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(),
              *load_sample_images().images]
    rng = np.random.default_rng(seed)
    for i in range(n):
        c = os.path.join(root, f"c{i % classes:03d}")
        os.makedirs(c, exist_ok=True)
        p = photos[rng.integers(len(photos))]
        h, w = p.shape[:2]
        ch, cw = rng.integers(h // 2, h + 1), rng.integers(w // 2, w + 1)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        im = Image.fromarray(p[y:y + ch, x:x + cw])
        long = int(rng.integers(333, 641))
        scale = long / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
        im.save(os.path.join(c, f"{i:05d}.jpg"), quality=int(rng.integers(75, 96)))


def torchvision_rate(root, workers):
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    torch.set_num_threads(1)
    ds = ImageFolder(root, T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()]))
    dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=workers)
    t = time.perf_counter()
    n = sum(x.shape[0] for x, _ in dl)
    return n, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--semcon", default=os.path.join(ROOT, "target", "release", "semcon"))
    ap.add_argument("--folder", default=None, help="reuse/make the folder here (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--semcon-simd", default=None, help="a semcon built with --features simd-jpeg")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = a.folder or os.path.join(tmp, "imagenet_like")
        if not os.path.isdir(root):
            t = time.perf_counter()
            make_folder(root, a.images)
            print(f"made {a.images} JPEGs in {time.perf_counter() - t:.0f} s")
        builds = [("semcon", a.semcon)] + ([("semcon simd-jpeg", a.semcon_simd)] if a.semcon_simd else [])
        tv_s, runs = [], {name: [] for name, _ in builds}
        for r in range(a.repeat):
            n_tv, s_tv = torchvision_rate(root, a.workers)
            tv_s.append(s_tv)
            for name, exe in builds:
                env = dict(os.environ, SEMCON_CACHE_DIR=os.path.join(tmp, f"cache{r}{len(name)}"))
                out = subprocess.run([exe, "bench", "--load", root, "--threads", str(a.workers), "--json"],
                                     check=True, capture_output=True, text=True, env=env).stdout
                s = json.loads(out)
                assert s["images"] == n_tv
                runs[name].append(s)
        med = lambda v: float(np.median(v))
        tv = n_tv / med(tv_s)
        print(f"{time.strftime('%Y-%m-%d')}, {n_tv} images, {a.workers} cores, median of {a.repeat} runs:")
        print(f"  torchvision ImageFolder + DataLoader(num_workers={a.workers}): {tv:.0f} images/s")
        for name, _ in builds:
            cold = n_tv / med([s["cold_s"] for s in runs[name]])
            cached = n_tv / med([s["cached_s"] for s in runs[name]])
            print(f"  {name}, first pass (no cache): {cold:.0f} images/s, {cold / tv:.2f}x; "
                  f"from the cache: {cached:.0f} images/s, {cached / tv:.1f}x")

if __name__ == "__main__":
    main()
