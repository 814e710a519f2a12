#!/usr/bin/env python3
"""The shipped transfer result (README "Transfer"): the four shipped
Fashion-MNIST checkpoints fine-tuned with `semcon transfer` on scikit-learn's
handwritten digits, full fine-tuning and linear probe, over several seeds.

Data: `sklearn.datasets.load_digits()` (1,797 8x8 images, 16 grey levels,
10 classes; a copy of the UCI "Optical Recognition of Handwritten Digits"
test set, CC BY 4.0, shipped inside scikit-learn, BSD-3-Clause; installed
from PyPI, nothing downloaded). Pixel values 0..16 are scaled to 0..255;
a stratified 80/20 split (`train_test_split(random_state=0)`): 1,437 train,
360 test images. semcon resizes them to the models' 28x28 (`--input-size
28`, antialiased bilinear) and replicates the gray channel to the models'
three; the head is replaced (`--head replace`: the digits' ten classes are
not Fashion-MNIST's).

Each seed fine-tunes every model the same way (same head initialisation,
same data order): full fine-tuning with Adam at 1e-3 for --epochs epochs,
and a linear probe (`--freeze backbone`) with Adam at 0.1 for --probe-epochs
epochs (the adversarially trained models' penultimate features vary tens of
times less than the standard model's, so a probe needs a large rate and many
steps). As a reference for what a converged probe reaches on the same
features, scikit-learn's LogisticRegression (lbfgs, C=1) is fitted to
`semcon features --layer penultimate` of the images upsampled by PIL
(bilinear) to 28x28.

Output: docs/transfer/digits.json (every row of every run) and a Markdown
table of mean and standard deviation over the seeds.

    pip install scikit-learn numpy          # PyPI only
    cargo build --release
    python3 scripts/transfer_digits.py [--semcon target/release/semcon] [--seeds 3] [--epochs 5]
"""
import argparse, json, os, subprocess, sys, tempfile, time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["standard", "continuity", "adv", "adv-continuity"]


def digits_npz(path):
    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return len(ytr), len(yte)


def reference_probe(semcon, ckpts, tmp):
    """LogisticRegression on each model's penultimate features (28x28 by PIL)."""
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    d = np.load(os.path.join(tmp, "digits.npz"))
    up = lambda a: np.stack([np.array(Image.fromarray(i).resize((28, 28), Image.BILINEAR)) for i in a])
    p28 = os.path.join(tmp, "digits28.npz")
    np.savez(p28, x_train=up(d["x_train"]), y_train=d["y_train"], x_test=up(d["x_test"]), y_test=d["y_test"])
    out = {}
    for name, c in zip(MODELS, ckpts):
        f = {}
        for split in ["train", "test"]:
            fp = os.path.join(tmp, f"f_{name}_{split}.npz")
            subprocess.run([semcon, "features", "-c", c, "-d", p28, "--split", split,
                            "--layer", "penultimate", "--out", fp], check=True, capture_output=True)
            f[split] = np.load(fp)
        clf = LogisticRegression(max_iter=5000).fit(f["train"]["features"], f["train"]["labels"])
        out[name] = float(clf.score(f["test"]["features"], f["test"]["labels"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--semcon", default=os.path.join(ROOT, "target", "release", "semcon"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "transfer", "digits.json"))
    a = ap.parse_args()
    ckpts = [os.path.join(ROOT, "checkpoints", f"{m}.safetensors") for m in MODELS]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "digits.npz")
        n_train, n_test = digits_npz(data)
        for freeze in ["none", "backbone"]:
            for seed in range(a.seeds):
                cmd = [a.semcon, "transfer", *sum((["-c", c] for c in ckpts), []),
                       "-d", data, "--input-size", "28", "--head", "replace",
                       "--freeze", freeze, "--seed", str(seed),
                       *(["--epochs", str(a.epochs)] if freeze == "none"
                         else ["--epochs", str(a.probe_epochs), "--lr", "0.1"]),
                       "--eval", "--out-dir", os.path.join(tmp, "tuned"), "--format", "json"]
                t = time.time()
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                r = json.loads(out)
                print(f"freeze={freeze} seed={seed}: " + ", ".join(
                    f"{x['model']} {100 * x['test_accuracy']:.2f}%" for x in r["rows"])
                    + f" ({time.time() - t:.0f} s)", file=sys.stderr)
                runs.append({"freeze": freeze, "seed": seed, "report": r})
        logreg = reference_probe(a.semcon, ckpts, tmp)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    meta = {"dataset": "sklearn load_digits, 8x8 -> 28x28, stratified 80/20 split (random_state=0)",
            "train_samples": n_train, "test_samples": n_test, "epochs": a.epochs,
            "probe_epochs": a.probe_epochs, "logistic_regression": logreg,
            "command": "python3 scripts/transfer_digits.py", "date": time.strftime("%Y-%m-%d"),
            "runs": runs}
    with open(a.out + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(a.out + ".tmp", a.out)

    print("| model | full fine-tuning: test acc | PGD acc (8/255) | colour DS | linear probe: test acc | logistic regression |")
    print("|---|---|---|---|---|---|")
    for m in MODELS:
        def vals(freeze, key):
            out = []
            for run in runs:
                if run["freeze"] != freeze:
                    continue
                row = next(x for x in run["report"]["rows"] if x["model"] == m)
                out.append(row["test_accuracy"] if key == "acc" else row["eval"][key])
            return np.array(out)
        def pct(v):
            return f"{100 * v.mean():.2f} ± {100 * v.std(ddof=1 if len(v) > 1 else 0):.2f}%"
        ds = vals("none", "colour_ds_mean")
        print(f"| {m} | {pct(vals('none', 'acc'))} | {pct(vals('none', 'pgd_accuracy'))} | "
              f"{ds.mean():.3f} ± {ds.std(ddof=1 if len(ds) > 1 else 0):.3f} | {pct(vals('backbone', 'acc'))} | {100 * logreg[m]:.2f}% |")


if __name__ == "__main__":
    main()
