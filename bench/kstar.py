#!/usr/bin/env python3
"""Benchmark: `semcon kstar` against scikit-learn's brute-force NearestNeighbors.

Generates N x D float32 features with C classes (Gaussian class centres,
some classes split into sub-clusters), runs

    semcon kstar --features F.npz --metric euclidean --out K.npy --device cpu

and computes the same k* with sklearn.neighbors.NearestNeighbors(
algorithm='brute', n_jobs=THREADS): kneighbors(n_neighbors = largest class
size) is enough, because at most n_c - 1 same-class samples precede the first
other-class neighbour. k*_i = 1 + same-class neighbours strictly closer than
the first other-class one. Both sides use the same number of threads.
Prints both wall times and CPU times (semcon: the whole process, file reading included;
sklearn: fit + kneighbors + k*), the ratio, and how many k* differ (sklearn's
float arithmetic is not exact, so ties or near-ties may differ).

Usage: python bench/kstar.py [--n 10000] [--dim 100] [--classes 100]
       [--threads T] [--bin target/release/semcon] [--repeat 3]
Needs numpy and scikit-learn; build first with `cargo build --release`.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def make_data(n, dim, classes, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    centres = rng.normal(0, 1.0, (classes, 3, dim))
    sub = rng.integers(0, 3, n) * (y % 3 == 0)  # every third class fractured
    X = centres[y, sub] + rng.normal(0, 0.6, (n, dim))
    return X.astype(np.float32), y.astype(np.int64)


def sklearn_kstar(X, y, threads):
    from sklearn.neighbors import NearestNeighbors

    k = int(np.bincount(y).max())
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean", n_jobs=threads)
    nn.fit(X)
    dist, idx = nn.kneighbors()  # excludes each sample itself
    same = y[idx] == y[:, None]
    first_other = np.argmax(~same, axis=1)
    has_other = (~same).any(axis=1)
    t = np.where(has_other, dist[np.arange(len(y)), first_other], np.inf)
    closer = (same & (dist < t[:, None])).sum(axis=1)
    return 1 + closer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--bin", default=os.path.join(root, "target", "release", "semcon"))
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} not found: run `cargo build --release` first")

    threads = str(a.threads)
    for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"]:
        os.environ[var] = threads
    from threadpoolctl import threadpool_limits

    load0 = os.getloadavg()
    X, y = make_data(a.n, a.dim, a.classes)
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "features.npz")
        out = os.path.join(tmp, "k.npy")
        np.savez(f, features=X, labels=y)
        cmd = [a.bin, "kstar", "--features", f, "--metric", "euclidean", "--out", out,
               "--format", "json", "--device", "cpu"]
        t_semcon, c_semcon = [], []
        for _ in range(a.repeat):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            t_semcon.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            c_semcon.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            if r.returncode != 0:
                sys.exit(f"semcon failed: {r.stderr}")
        k_semcon = np.load(out)

    t_sk, c_sk = [], []
    with threadpool_limits(limits=a.threads):
        for _ in range(a.repeat):
            c0 = time.process_time()
            t0 = time.perf_counter()
            k_sk = sklearn_kstar(X, y, a.threads)
            t_sk.append(time.perf_counter() - t0)
            c_sk.append(time.process_time() - c0)

    ts, tk = min(t_semcon), min(t_sk)
    diff = int((k_semcon != k_sk).sum())
    print(f"data: {a.n} x {a.dim} float32, {a.classes} classes, {a.threads} threads, best of {a.repeat}")
    print(f"semcon kstar (exact, whole process): {ts:.3f} s   runs {', '.join(f'{t:.3f}' for t in t_semcon)}")
    print(f"sklearn brute NearestNeighbors:      {tk:.3f} s   runs {', '.join(f'{t:.3f}' for t in t_sk)}")
    print(f"ratio sklearn / semcon: {tk / ts:.2f}x (wall)")
    cs, ck = min(c_semcon), min(c_sk)
    print(f"CPU time (user+sys, all threads): semcon {cs:.3f} s, sklearn {ck:.3f} s, ratio {ck / cs:.2f}x")
    print(f"load average before/after: {load0} / {os.getloadavg()}")
    print(f"k* differing between the two: {diff} of {a.n}")


if __name__ == "__main__":
    main()
