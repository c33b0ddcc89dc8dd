#!/usr/bin/env python3
"""One benchmark row's training step, (b) Detectron2 GN against (c) gn_det GN, many repeats in
one process, and a torch.profiler step of each: which ops' self time differs, and how much of the
step GN is.

The benchmark's workload and models (gn_det.benchmark: fixed RoIs, Detectron2's run_step), so the
numbers are those of a `tools/benchmark.py model` row, with more repeats.

    OMP_NUM_THREADS=2 PYTHONPATH=. python3 docs/results/2026-12-02_fused_matrix_profile.py \
        --threads 2 --arch R18-FPN --size 384x640 --images 1 --freeze-at 2 --repeats 10
"""
import argparse
import json
import os
import statistics
import time

import torch
from detectron2.utils.events import EventStorage
from torch.profiler import ProfilerActivity, profile

import gn_det  # noqa: F401  registers gn_det's modules
from gn_det.benchmark import BenchmarkSettings, BenchmarkedModel, build_variant_cfg, make_workload

GN_OPS = {
    "b": ("aten::native_group_norm", "aten::native_group_norm_backward", "aten::relu_",
          "aten::relu", "aten::threshold_backward"),
    "c": ("gn_det::group_norm_act_forward", "gn_det::group_norm_act_apply",
          "gn_det::group_norm_act_backward", "aten::relu_", "aten::relu", "aten::threshold_backward"),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--arch", default="R50-FPN")
    p.add_argument("--size", default="384x640")
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--freeze-at", type=int, default=0)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    spec = BenchmarkSettings(variants=("b", "c")).spec((h, w), args.images)
    workload = make_workload(spec)
    models = {k: BenchmarkedModel(build_variant_cfg(k, spec, "cpu", args.freeze_at, args.arch)) for k in "bc"}
    result = {"threads": args.threads, "arch": args.arch, "image_size": [h, w], "images": args.images,
              "freeze_at": args.freeze_at, "repeats": args.repeats,
              "load_average_start": list(os.getloadavg())}
    times = {k: [] for k in models}
    with EventStorage(0):
        for m in models.values():
            m.set_workload(workload)
            m.step(0)  # warm-up
        for rep in range(args.repeats):
            for k in ("bc" if rep % 2 == 0 else "cb"):
                t0 = time.perf_counter()
                models[k].step(0)
                times[k].append(time.perf_counter() - t0)
        ops = {}
        for k, m in models.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                m.step(0)
            ops[k] = {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()}
    paired = [c / b for b, c in zip(times["b"], times["c"])]
    result.update({
        "load_average_end": list(os.getloadavg()),
        "step_s": {k: {"median": statistics.median(v), "samples": v} for k, v in times.items()},
        "c_to_b": statistics.median(times["c"]) / statistics.median(times["b"]),
        "c_to_b_paired": statistics.median(paired), "c_to_b_paired_range": [min(paired), max(paired)],
        "profiled_self_ms_total": {k: sum(t for t, _ in v.values()) for k, v in ops.items()},
        "gn_self_ms": {k: sum(ops[k].get(n, (0, 0))[0] for n in GN_OPS[k]) for k in ops},
    })
    names = set(ops["b"]) | set(ops["c"])
    diff = sorted(names, key=lambda n: -abs(ops["c"].get(n, (0, 0))[0] - ops["b"].get(n, (0, 0))[0]))
    result["largest_differences"] = [
        {"op": n, "b_ms": ops["b"].get(n, (0, 0))[0], "b_calls": ops["b"].get(n, (0, 0))[1],
         "c_ms": ops["c"].get(n, (0, 0))[0], "c_calls": ops["c"].get(n, (0, 0))[1]}
        for n in diff[:args.top]]
    print(json.dumps({k: v for k, v in result.items() if k != "step_s"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
