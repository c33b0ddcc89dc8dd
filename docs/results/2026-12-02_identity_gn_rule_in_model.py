#!/usr/bin/env python3
"""Inference side by side in one process: (b) Detectron2's GN, (c) gn_det's default, and (c_id)
the same (c) model with a candidate `auto` rule switched on -- identity GN (no ReLU to fold)
without grad goes to PyTorch's native_group_norm instead of gn_det's C++ kernel. The three
alternate with a rotating order; ratios per repeat and of medians.

    OMP_NUM_THREADS=2 PYTHONPATH=. python3 docs/results/2026-12-02_identity_gn_rule_in_model.py \
        2 R50-FPN 800x1333 1 12 out.json      # threads, arch, image size, images, repeats, json
"""
import sys, time, statistics, json, os, torch
import gn_det
import gn_det.layers.fused_conv as fc
from gn_det.layers.group_norm_act import group_norm_act as gna
from gn_det.benchmark import BenchmarkSettings, BenchmarkedModel, build_variant_cfg, make_workload
threads, arch, size, ims, reps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
RULE = {"on": False}
def patched(x, w, b, g, eps, act, backend, where=""):
    if RULE["on"] and act == "identity" and not torch.is_grad_enabled():
        backend = "torch"
    return gna(x, w, b, g, eps, act, backend, where)
fc.group_norm_act = patched
h, w_ = (int(v) for v in size.split("x"))
spec = BenchmarkSettings(variants=("b", "c")).spec((h, w_), ims)
wl = make_workload(spec)
ms = {k: BenchmarkedModel(build_variant_cfg(k, spec, "cpu", arch=arch)) for k in "bc"}
for m in ms.values(): m.set_workload(wl); m.infer()
def run(k):
    RULE["on"] = k == "c_id"
    t0 = time.perf_counter(); ms["b" if k == "b" else "c"].infer(); return time.perf_counter() - t0
keys = ["b", "c", "c_id"]
t = {k: [] for k in keys}
for r in range(reps):
    order = keys[r % 3:] + keys[:r % 3]
    for k in order: t[k].append(run(k))
med = {k: statistics.median(v) for k, v in t.items()}
pc = [c / b for b, c in zip(t["b"], t["c"])]; pi = [c / b for b, c in zip(t["b"], t["c_id"])]; pci = [i / c for c, i in zip(t["c"], t["c_id"])]
out = {"threads": threads, "arch": arch, "size": size, "images": ims, "repeats": reps, "load_end": os.getloadavg(),
       "median_s": med, "c/b": med["c"] / med["b"], "c_id/b": med["c_id"] / med["b"], "c_id/c": med["c_id"] / med["c"],
       "paired c/b": statistics.median(pc), "paired c_id/b": statistics.median(pi), "paired c_id/c": statistics.median(pci),
       "range c/b": [min(pc), max(pc)], "range c_id/b": [min(pi), max(pi)], "noise_b": (max(t["b"]) - min(t["b"])) / med["b"], "samples": t}
print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
json.dump(out, open(sys.argv[6], "w"), indent=1)
