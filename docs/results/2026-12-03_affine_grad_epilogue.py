#!/usr/bin/env python3
"""Per GN shape, gn_det's C++ backward with and without the affine gradients (their difference
is the epilogue that turns the per-(sample, channel) sums into d weight and d bias), against
what the plain path runs in backward (``native_group_norm_backward`` + ``threshold_backward``);
then the whole training call of each shape, fused (backend "cpu", forward + recompute + backward)
against ``nn.GroupNorm`` + ReLU, side by side (``benchmark_group_norm``).

Shapes: the rows of a ``2026-12-02_fused_backends_by_shape_*.json`` (the R50-FPN and R18-FPN
GN layers of the matrix). Run once per build to compare builds; every ratio printed is measured
side by side in one process.

    OMP_NUM_THREADS=1 PYTHONPATH=. python3 docs/results/2026-12-03_affine_grad_epilogue.py \
        --threads 1 --shapes docs/results/2026-12-02_fused_backends_by_shape_t1.json --json out.json

``--table BEFORE.json AFTER.json`` prints the markdown table of the results page from two runs.
"""
import argparse
import json
import os
import statistics
import time

import torch

from gn_det.benchmark.layer_timing import benchmark_group_norm
from gn_det.benchmark.timing import interleaved
from gn_det.layers.group_norm_act import cpu_kernels_available


def _looped(fn, k):
    def run():
        for _ in range(k):
            fn()

    return run


def backward_calls(shape, groups, repeats):
    ops = torch.ops.gn_det
    x, dy = torch.randn(*shape), torch.randn(*shape)
    c = shape[1]
    w, b = torch.randn(c), torch.randn(c)
    n, hw = shape[0], x.numel() // (shape[0] * c)
    y, mean, rstd = ops.group_norm_act_forward(x, w, b, groups, 1e-5, True)
    out, grad_in = torch.empty_like(x), torch.empty_like(x)
    fns = {
        "cpp_all": lambda: ops.group_norm_act_backward(dy, x, w, b, mean, rstd, True, out, [True, True, True]),
        "cpp_dx": lambda: ops.group_norm_act_backward(dy, x, w, b, mean, rstd, True, out, [True, False, False]),
        "plain": lambda: torch.ops.aten.native_group_norm_backward(
            torch.ops.aten.threshold_backward.grad_input(dy, y, 0, grad_input=grad_in),
            x, mean, rstd, w, n, c, hw, groups, [True, True, True]),
    }
    k = max(1, int(2e6 // x.numel()))  # at least ~2M elements per timed call
    samples = interleaved({name: _looped(f, k) for name, f in fns.items()}, repeats, warmup=2)
    med = {name: statistics.median(s) / k * 1e3 for name, s in samples.items()}
    return {f"{name}_bwd_ms": v for name, v in med.items()} | {"epilogue_ms": med["cpp_all"] - med["cpp_dx"]}


def table(before_path, after_path):
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    print(f"| shape ({after['threads']} thread{'s' if after['threads'] > 1 else ''}) | epilogue before -> after (ms) "
          "| C++ backward / plain backward, before -> after | train fused / plain, before -> after |")
    print("|---|---:|---:|---:|")
    for b, a in zip(before["rows"], after["rows"]):
        assert b["shape"] == a["shape"], (b["shape"], a["shape"])
        print(f"| `{tuple(a['shape'])}` | {b['epilogue_ms']:.3f} -> {a['epilogue_ms']:.3f} "
              f"| x{b['cpp_all_bwd_ms'] / b['plain_bwd_ms']:.2f} -> x{a['cpp_all_bwd_ms'] / a['plain_bwd_ms']:.2f} "
              f"| x{b['fused_train_ms'] / b['plain_train_ms']:.2f} -> x{a['fused_train_ms'] / a['plain_train_ms']:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shapes")
    p.add_argument("--table", nargs=2, metavar=("BEFORE", "AFTER"))
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--label", default="", help="the build measured (a commit), recorded in the JSON")
    p.add_argument("--json")
    args = p.parse_args()
    if args.table:
        return table(*args.table)
    if not args.shapes:
        p.error("--shapes is required")
    if not cpu_kernels_available():
        raise SystemExit("gn_det._C is not built: run `bash scripts/setup_env.sh` first.")
    torch.set_num_threads(args.threads)
    with open(args.shapes) as f:
        shapes = [(r["name"], tuple(r["shape"]), r["groups"], r["calls_per_step"]) for r in json.load(f)["rows"]]
    start, load0 = time.strftime("%H:%M", time.gmtime()), os.getloadavg()[0]
    rows = []
    for name, shape, groups, calls in shapes:
        row = {"name": name, "shape": shape, "groups": groups, "calls_per_step": calls}
        row.update(backward_calls(shape, groups, args.repeats))
        [r] = benchmark_group_norm([(name, shape, groups)], "cpu", repeats=args.repeats, backend="cpu", timer="wall")
        row.update(plain_train_ms=r["torch_train_ms"], fused_train_ms=r["fused_train_ms"])
        rows.append(row)
        print(f"{str(shape):22s} bwd C++ {row['cpp_all_bwd_ms']:8.3f} (epilogue {row['epilogue_ms']:7.3f}) "
              f"plain {row['plain_bwd_ms']:8.3f} | train fused {row['fused_train_ms']:8.3f} plain "
              f"{row['plain_train_ms']:8.3f} x{row['fused_train_ms'] / row['plain_train_ms']:.2f}", flush=True)
    result = {"label": args.label, "threads": args.threads, "repeats": args.repeats, "timer": "wall",
              "utc": f"{start}-{time.strftime('%H:%M', time.gmtime())}",
              "load": [round(load0, 2), round(os.getloadavg()[0], 2)], "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
