#!/usr/bin/env python3
"""The fused op's costs outside its arithmetic, and how its kernels scale from 1 to 2 threads.

1. The recompute scope's saved-tensor hooks: Python time per saved tensor (pack + unpack), from a
   chain of small multiplications (each saves its two inputs) run with and without gn_det's
   hooks, and how many tensors one training step of a benchmark model saves inside a scope.
2. Kernel scaling: on GN shapes of the two models, gn_det's C++ forward, recompute (apply) and
   backward against PyTorch's native_group_norm and native_group_norm_backward, each timed at 1
   and 2 threads in this one process (thread counts alternate, so both see the same machine).
3. The affine-gradient epilogue of the C++ backward (rstd to double, repeat_interleave over the
   group's channels, product, sum over N, cast), as the same ATen calls on the same sizes.

    PYTHONPATH=. python3 docs/results/2026-12-02_fused_overheads.py --json out.json
"""
import argparse
import json
import os
import statistics
import time

import torch
from detectron2.utils.events import EventStorage

import gn_det  # noqa: F401  registers gn_det's modules and loads the kernels
from gn_det.benchmark import BenchmarkSettings, BenchmarkedModel, build_variant_cfg, make_workload
from gn_det.layers import recompute as recompute_module

SHAPES = [  # (where, (N, C, H, W)); 32 groups
    ("R50 stem, 512x512 x2", (2, 64, 256, 256)),
    ("R50 res2 conv3, 512x512 x2", (2, 256, 128, 128)),
    ("R50 res4 conv3, 800x1333 x2", (2, 1024, 50, 84)),
    ("R50 FPN P5, 800x1333 x2", (2, 256, 25, 42)),
    ("R18 FPN P5, 800x1333 x2", (2, 64, 25, 42)),
    ("mask head, 256 RoIs", (256, 256, 14, 14)),
    ("box head, 1024 RoIs", (1024, 256, 7, 7)),
]


def _median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def hook_cost(repeats):
    """Microseconds per saved tensor that gn_det's pack/unpack hooks add to forward+backward."""
    links = 200
    x0 = torch.randn(8, requires_grad=True)
    ws = [torch.randn(8, requires_grad=True) for _ in range(links)]

    def chain():
        x = x0
        for w in ws:
            x = x * w  # saves x and w
        x.sum().backward()

    pack, unpack = recompute_module._make_hooks(None)

    def hooked():
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            chain()

    plain, with_hooks = [], []
    for _ in range(repeats):  # alternate, so both see the same machine
        plain.append(_median_ms(chain, 3))
        with_hooks.append(_median_ms(hooked, 3))
    saved = 2 * links
    return {"saved_tensors": saved, "plain_ms": statistics.median(plain),
            "hooked_ms": statistics.median(with_hooks),
            "us_per_saved_tensor": (statistics.median(with_hooks) - statistics.median(plain)) * 1e3 / saved}


def saved_per_step(arch, size, images, freeze_at):
    """How many tensors one training step packs inside gn_det's scopes, and how many as recipes."""
    h, w = size
    spec = BenchmarkSettings(variants=("c",)).spec((h, w), images)
    model = BenchmarkedModel(build_variant_cfg("c", spec, "cpu", freeze_at, arch))
    model.set_workload(make_workload(spec))
    counts = {"plain": 0, "recipe": 0}
    original = recompute_module._make_hooks

    def counting_hooks(outer):
        pack, unpack = original(outer)

        def counted_pack(t):
            packed = pack(t)
            counts["recipe" if isinstance(packed, recompute_module._Recipe) else "plain"] += 1
            return packed

        counted_pack._gn_det_recompute = True
        return counted_pack, unpack

    recompute_module._make_hooks = counting_hooks
    try:
        with EventStorage(0):
            model.step(0)
    finally:
        recompute_module._make_hooks = original
    return {"arch": arch, "image_size": [h, w], "images": images, "freeze_at": freeze_at, **counts}


def kernel_scaling(repeats):
    rows = []
    ops = torch.ops.gn_det
    for where, shape in SHAPES:
        n, c = shape[:2]
        hw = shape[2] * shape[3]
        x = torch.randn(shape)
        dy = torch.randn(shape)
        w = torch.rand(c) + 0.5
        b = torch.randn(c)
        y, mean, rstd = ops.group_norm_act_forward(x, w, b, 32, 1e-5, True)
        _, tmean, trstd = torch.native_group_norm(x, w, b, n, c, hw, 32, 1e-5)
        fns = {
            "cpp_forward": lambda: ops.group_norm_act_forward(x, w, b, 32, 1e-5, True),
            "cpp_apply": lambda: ops.group_norm_act_apply(x, w, b, mean, rstd, True),
            "cpp_backward": lambda: ops.group_norm_act_backward(dy, x, w, b, mean, rstd, True, None,
                                                                 [True, True, True]),
            "torch_forward": lambda: torch.native_group_norm(x, w, b, n, c, hw, 32, 1e-5),
            "torch_backward": lambda: torch.ops.aten.native_group_norm_backward(
                dy, x, tmean, trstd, w, n, c, hw, 32, [True, True, True]),
        }
        samples = {(k, t): [] for k in fns for t in (1, 2)}
        for rep in range(repeats):
            for t in ((1, 2) if rep % 2 == 0 else (2, 1)):
                torch.set_num_threads(t)
                for k, fn in fns.items():
                    samples[(k, t)].append(_median_ms(fn, 3))
        row = {"where": where, "shape": list(shape)}
        for k in fns:
            one, two = (statistics.median(samples[(k, t)]) for t in (1, 2))
            row[k] = {"1_thread_ms": one, "2_threads_ms": two, "speedup": one / two}
        rows.append(row)
        print(where, {k: round(row[k]["speedup"], 2) for k in fns}, flush=True)
    torch.set_num_threads(2)
    return rows


def affine_grad_epilogue(repeats):
    rows = []
    for where, shape in SHAPES:
        n, c = shape[:2]
        s2 = torch.randn(n, c, dtype=torch.float64)
        s1 = torch.randn(n, c, dtype=torch.float64)
        r = torch.rand(n, 32)

        def epilogue():
            rs = r.to(torch.float64).repeat_interleave(c // 32, 1)
            (s2 * rs).sum(0).to(torch.float32)
            s1.sum(0).to(torch.float32)

        rows.append({"where": where, "shape": list(shape), "ms": _median_ms(epilogue, repeats)})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(2)
    result = {"load_average_start": list(os.getloadavg())}
    result["hook"] = hook_cost(args.repeats)
    print("hook", result["hook"], flush=True)
    result["saved_per_step"] = [
        saved_per_step("R50-FPN", (512, 512), 2, 0),
        saved_per_step("R18-FPN", (384, 640), 1, 2),
    ]
    print("saved", result["saved_per_step"], flush=True)
    result["affine_grad_epilogue"] = affine_grad_epilogue(args.repeats)
    result["kernel_scaling"] = kernel_scaling(args.repeats)
    result["load_average_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
