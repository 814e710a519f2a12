"""The PyTorch side of bench/families.sh: writes a torchvision model with
seeded random weights (BatchNorm statistics randomised too) as
.safetensors for semcon, and times PyTorch eager on the same model, same
threads: forward, and forward + input gradient of the cross-entropy (what a
PGD step costs), batch B at S px, eval mode.

    python3 bench/families_torch.py ARCH OUT.safetensors --threads 2 --batch 32 --size 224 --iters 3 [--device cuda]
"""
import argparse, json, resource, time
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("arch")
p.add_argument("out")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--size", type=int, default=224)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--iters", type=int, default=3)
p.add_argument("--device", default="cpu", help="cpu or cuda (strict fp32 unless --tf32)")
p.add_argument("--tf32", action="store_true", help="allow TF32 (PyTorch's default for cuDNN convolutions)")
a = p.parse_args()
torch.backends.cudnn.allow_tf32 = a.tf32
torch.backends.cuda.matmul.allow_tf32 = a.tf32

torch.set_num_threads(a.threads)
torch.manual_seed(0)
m = getattr(torchvision.models, a.arch)(weights=None).eval()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.75, 1.25)
save_file({k: v.contiguous() for k, v in m.state_dict().items()}, a.out)
m = m.to(a.device)
for q in m.parameters():
    q.requires_grad_(False)
x = torch.rand(a.batch, 3, a.size, a.size).to(a.device)
y = (torch.arange(a.batch) % 1000).to(a.device)


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(f):
    for _ in range(a.warmup):
        f()
    t0, c0 = time.perf_counter(), cpu()
    for _ in range(a.iters):
        f()
    return (time.perf_counter() - t0) / a.iters, (cpu() - c0) / a.iters


def fwd():
    with torch.no_grad():
        m(x).sum().item()


def fwd_bwd():
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(m(xg), y), xg)
    g.sum().item()


f, fb = timed(fwd), timed(fwd_bwd)
print(json.dumps({"arch": a.arch, "batch": a.batch, "threads": a.threads, "torch": torch.__version__, "device": a.device,
                  "forward_s": f[0], "forward_cpu_s": f[1], "fwd_bwd_s": fb[0], "fwd_bwd_cpu_s": fb[1]}))
