"""k* with torch.cdist on a GPU (the PyTorch baseline for `semcon kstar --device cuda`).

k*_i = 1 + number of same-class samples strictly closer than the nearest
other-class sample (euclidean), computed in row blocks with torch.cdist.
    python3 bench/kstar_torch.py F.npz [--block 4096] [--device cuda]
Prints seconds as JSON: "seconds" with the features already on the device,
"seconds_from_host" starting from the numpy arrays in host memory (as `semcon
kstar` starts from its features in memory); GPU synchronised, best of --repeat.
"""
import argparse, json, time
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("features")
p.add_argument("--block", type=int, default=4096)
p.add_argument("--device", default="cuda")
p.add_argument("--repeat", type=int, default=3)
a = p.parse_args()
z = np.load(a.features)
dev = torch.device(a.device)
X = torch.from_numpy(z["features"].astype(np.float32)).to(dev)
y = torch.from_numpy(z["labels"].astype(np.int64)).to(dev)


def kstar():
    out = torch.empty(X.shape[0], dtype=torch.int64, device=dev)
    for s in range(0, X.shape[0], a.block):
        d = torch.cdist(X[s:s + a.block], X)
        same = y[s:s + a.block, None] == y[None, :]
        nearest_other = torch.where(same, torch.inf, d).min(1).values
        d[torch.arange(d.shape[0], device=dev), torch.arange(s, s + d.shape[0], device=dev)] = torch.inf
        out[s:s + a.block] = 1 + ((d < nearest_other[:, None]) & same).sum(1)
    return out


kstar()
if dev.type == "cuda":
    torch.cuda.synchronize()
best = 1e9
for _ in range(a.repeat):
    t = time.perf_counter()
    k = kstar()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    best = min(best, time.perf_counter() - t)
xh, yh = z["features"].astype(np.float32), z["labels"].astype(np.int64)
best_host = 1e9
for _ in range(a.repeat):
    t = time.perf_counter()
    X = torch.from_numpy(xh).to(dev)
    y = torch.from_numpy(yh).to(dev)
    kh = kstar()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    best_host = min(best_host, time.perf_counter() - t)
assert torch.equal(k, kh)
np.save(a.features + ".torch_k.npy", k.cpu().numpy())
print(json.dumps({"framework": "pytorch", "n": X.shape[0], "dim": X.shape[1], "seconds": best,
                  "seconds_from_host": best_host}))
