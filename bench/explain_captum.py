"""Captum's side of bench/explain.sh: Integrated Gradients (50 steps,
Gauss-Legendre, zero baseline, the convergence delta) of a batch of random
images in [0,1], each for the label i % classes, on the CPU with the same
threads as semcon; `internal_batch_size` = the batch, so each of the 50
steps is one forward + backward of the batch, as semcon runs it.

    python bench/explain_captum.py --shipped checkpoints/standard --batch 256 --size 28
    python bench/explain_captum.py --torchvision resnet50 --write W.safetensors --batch 8 --size 224

--shipped: a semcon checkpoint (ResNet-18 names, CIFAR stem, its width and
normalisation from the sidecar) in torchvision's ResNet; --torchvision: a
torchvision model, seeded random weights, written to --write for semcon.
Prints one JSON line: seconds per batch (wall and CPU), mean of --iters.
"""
import argparse, json, os, sys, time
import torch
from captum.attr import IntegratedGradients

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))

p = argparse.ArgumentParser()
p.add_argument("--shipped")
p.add_argument("--torchvision")
p.add_argument("--write")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--size", type=int, default=28)
p.add_argument("--steps", type=int, default=50)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--iters", type=int, default=3)
a = p.parse_args()
torch.set_num_threads(a.threads)

if a.shipped:
    from safetensors.torch import load_file
    from torchvision.models.resnet import BasicBlock
    from make_models import SlimResNet
    meta = json.load(open(a.shipped + ".json"))
    assert (meta["arch"], meta["stem"]) == ("resnet18", "cifar")
    net = SlimResNet(BasicBlock, [2, 2, 2, 2], meta["width"], meta["num_classes"], "cifar")
    net.load_state_dict(load_file(a.shipped + ".safetensors"), strict=True)
    mean, std, classes, name = meta["mean"], meta["std"], meta["num_classes"], os.path.basename(a.shipped)
else:
    import torchvision
    from safetensors.torch import save_file
    torch.manual_seed(0)
    net = getattr(torchvision.models, a.torchvision)()
    mean, std, classes, name = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1000, a.torchvision
    if a.write:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, a.write)
        json.dump({"mean": mean, "std": std}, open(a.write[: -len(".safetensors")] + ".json", "w"))
net.eval()
for q in net.parameters():
    q.requires_grad_(False)
m_ = torch.tensor(mean).view(1, 3, 1, 1)
s_ = torch.tensor(std).view(1, 3, 1, 1)
model = lambda x: net((x - m_) / s_)

g = torch.Generator().manual_seed(1)
x = torch.rand(a.batch, 3, a.size, a.size, generator=g)
y = torch.arange(a.batch) % classes
ig = IntegratedGradients(model)


def run():
    attr, delta = ig.attribute(x, target=y, n_steps=a.steps, method="gausslegendre",
                               internal_batch_size=a.batch, return_convergence_delta=True)
    return float(attr.sum()) + float(delta.sum())


for _ in range(a.warmup):
    run()
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(max(a.iters, 1)):
    run()
n = max(a.iters, 1)
print(json.dumps({"model": name, "batch": a.batch, "size": a.size, "steps": a.steps,
                  "threads": a.threads, "explain_s": (time.perf_counter() - t0) / n,
                  "explain_cpu_s": (time.process_time() - c0) / n}))
