"""Compares two `semcon eval --format json` reports (CPU vs GPU): accuracies
within one sample, DS means within 1e-3 relative. Exit 1 on a mismatch.

    python3 scripts/compare_eval.py cpu.json gpu.json [label]
"""
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
label = sys.argv[3] if len(sys.argv) > 3 else 'gpu'
n = cpu["samples"]; worst = 0; bad = []
for mc, mg in zip(cpu["models"], gpu["models"]):
    pairs = [("clean", mc["clean_accuracy"], mg["clean_accuracy"])]
    pairs += [(f'{a["name"]}:{a["level"]}', a["accuracy"], b["accuracy"]) for a, b in zip(mc["perturbations"], mg["perturbations"])]
    pairs += [(f'pgd {a["eps"]:.4f}', a["accuracy"], b["accuracy"]) for a, b in zip(mc["pgd"], mg["pgd"])]
    for name, a, b in pairs:
        d = round(abs(a - b) * n); worst = max(worst, d)
        if d > 1: bad.append(f'{mc["name"]} {name}: cpu {a} gpu {b}')
    for a, b in zip(mc["perturbations"], mg["perturbations"]):
        if abs(a["ds_mean"] - b["ds_mean"]) > 1e-3 * max(1, abs(a["ds_mean"])): bad.append(f'{mc["name"]} {a["name"]}:{a["level"]} DS {a["ds_mean"]} vs {b["ds_mean"]}')
print(f"eval cpu vs {label}: {len(cpu['models'])} models, largest accuracy difference {worst} sample(s); devices: {cpu['device']!r} / {gpu['device']!r}")
for b in bad: print("  MISMATCH", b)
sys.exit(1 if bad else 0)
