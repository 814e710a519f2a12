#!/usr/bin/env python3
"""Benchmark: memory of `semcon eval` on ImageNet-sized folders of 2,000 and
20,000 JPEGs (333-640 px, made once and seeded by bench/imagefolder.py's
make_folder, 7 class folders to fit the 7-class fixture ResNet-18), with
torchvision's eval preprocessing (--preset imagenet: 256/224 bilinear).

For each size it runs, on --threads cores,

  cold:     the first read: decode + preprocess into a fresh cache, then
            clean accuracy and one perturbation (hue:2);
  cached:   the same command again (the cache mapped);
  no-cache: --no-cache (uint8 pixels held in memory),

and prints the peak anonymous memory (RssAnon, sampled every 10 ms from
/proc/PID/status: the process's own memory, not the page cache the mapped
cache file lives in), the peak resident set (VmHWM: both) and the wall time.
The claim checked: the cold and cached peaks do not grow with the number of
images; only --no-cache grows, by 150 KB (224x224x3 bytes) per image.

    cargo build --release
    python3 bench/memory.py [--images 2000,20000] [--folder-base DIR] [--threads 2]
"""
import argparse, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from imagefolder import make_folder  # noqa: E402

MODEL = os.path.join(ROOT, "tests", "fixtures", "models", "resnet18_imagenet.pth")


def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "VmHWM", "RssFile"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def run(cmd, env):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_anon = peak_hwm = 0
    while p.poll() is None:
        s = status(p.pid)
        peak_anon = max(peak_anon, s.get("RssAnon", 0))
        peak_hwm = max(peak_hwm, s.get("VmHWM", 0))
        time.sleep(0.01)
    err = p.stderr.read().decode()
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err}")
    return peak_anon, peak_hwm, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default="2000,20000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--semcon", default=os.path.join(ROOT, "target", "release", "semcon"))
    ap.add_argument("--folder-base", default=None, help="reuse/make the folders here (default: a temp dir)")
    a = ap.parse_args()
    mib = lambda b: f"{b / 2**20:8.0f} MiB"
    with tempfile.TemporaryDirectory() as tmp:
        base = a.folder_base or tmp
        print(f"semcon eval, ResNet-18 (width 16, 7 classes), --preset imagenet, clean + hue:2, {a.threads} threads")
        print(f"{'images':>7} {'run':>9} {'peak RssAnon':>13} {'peak VmHWM':>13} {'wall':>8}")
        for n in [int(x) for x in a.images.split(",")]:
            root = os.path.join(base, f"memory_{n}")
            if not os.path.isdir(root):
                make_folder(root, n, classes=7)
            cache = tempfile.mkdtemp(dir=tmp)
            env = dict(os.environ, SEMCON_CACHE_DIR=cache, RAYON_NUM_THREADS=str(a.threads))
            cmd = [a.semcon, "eval", "-c", MODEL, "-d", root, "--preset", "imagenet",
                   "--perturb", "hue:2", "--out", os.path.join(tmp, "out.json")]
            for name, extra in [("cold", []), ("cached", []), ("no-cache", ["--no-cache"])]:
                anon, hwm, wall = run(cmd + extra, env)
                print(f"{n:>7} {name:>9} {mib(anon)} {mib(hwm)} {wall:7.1f}s", flush=True)
            subprocess.run(["rm", "-rf", cache])


if __name__ == "__main__":
    main()
