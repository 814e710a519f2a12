"""PyTorch eager CPU equivalent of `semcon bench`: torchvision resnet18 with the
cifar stem (conv1 3x3 stride 1, no maxpool), random init, eval mode.

    python3 bench/infer_torch.py --threads 2 [--batch 256 --iters 3 --backward --json]
"""
import argparse, json, time
import torch, torch.nn as nn, torchvision

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--size", type=int, default=32)
p.add_argument("--classes", type=int, default=100)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--iters", type=int, default=3)
p.add_argument("--backward", action="store_true", help="also time forward+backward w.r.t. the input")
p.add_argument("--json", action="store_true")
p.add_argument("--device", default="cpu", help="cpu or cuda")
p.add_argument("--tf32", action="store_true", help="allow TF32 (PyTorch's default for cuDNN convolutions); off = strict fp32")
a = p.parse_args()

torch.set_num_threads(a.threads)
m = torchvision.models.resnet18(num_classes=a.classes)
m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
m.maxpool = nn.Identity()
m.eval()
for q in m.parameters():
    q.requires_grad_(False)
torch.backends.cudnn.allow_tf32 = a.tf32
torch.backends.cuda.matmul.allow_tf32 = a.tf32
dev = torch.device(a.device)
m = m.to(dev)
x = torch.rand(a.batch, 3, a.size, a.size, device=dev)
y = (torch.arange(a.batch) % a.classes).to(dev)


def timed(f):
    for _ in range(a.warmup):
        f()
    t0, c0, n = time.perf_counter(), time.process_time(), max(a.iters, 1)
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def fwd():
    with torch.inference_mode():
        m(x).sum().item()


def fwd_bwd():
    xv = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(m(xv), y)
    (g,) = torch.autograd.grad(loss, xv)
    g.sum().item()


r = {"framework": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
     "device": a.device, "tf32": a.tf32}
f, fc = timed(fwd)
r.update(forward_s=f, forward_cpu_s=fc, forward_images_per_s=a.batch / f)
if a.backward:
    b, bc = timed(fwd_bwd)
    r.update(fwd_bwd_s=b, fwd_bwd_cpu_s=bc, fwd_bwd_images_per_s=a.batch / b)
if a.json:
    print(json.dumps(r))
else:
    print(f"pytorch {torch.__version__}, resnet18 cifar stem, batch {a.batch}, {r['threads']} threads")
    print(f"forward:          {a.batch / f:8.1f} images/s ({f:.3f} s/batch, {fc:.3f} CPU s/batch)")
    if a.backward:
        print(f"forward+backward: {a.batch / b:8.1f} images/s ({b:.3f} s/batch, {bc:.3f} CPU s/batch)")
