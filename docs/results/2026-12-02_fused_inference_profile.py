#!/usr/bin/env python3
"""Inference of the benchmark's (b) Detectron2 GN and (c) gn_det GN, many repeats, and where the
time goes: the GN ops' self time (torch.profiler) against the whole call.

The benchmark's rows give one inference ratio from 3 repeats; this runs one row's models only at
inference, alternating (b) and (c) in one process for --repeats rounds, and profiles one call of
each. It answers whether an inference ratio above 1.00 comes from GN or from the rest.

    OMP_NUM_THREADS=2 PYTHONPATH=. python3 docs/results/2026-12-02_fused_inference_profile.py \
        --threads 2 --size 800x1333 --images 1 --repeats 11
"""
import argparse
import json
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import gn_det  # noqa: F401  registers gn_det's modules
from gn_det.benchmark import BenchmarkSettings, BenchmarkedModel, build_variant_cfg, make_workload

GN_OPS = {
    "b": ("aten::native_group_norm", "aten::relu_", "aten::relu"),
    "c": ("gn_det::group_norm_act_forward",),
}


def _self_ms(prof, names):
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in names) / 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", default="800x1333")
    p.add_argument("--images", type=int, default=1)
    p.add_argument("--arch", default="R50-FPN")
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    spec = BenchmarkSettings(variants=("b", "c")).spec((h, w), args.images)
    workload = make_workload(spec)
    models = {k: BenchmarkedModel(build_variant_cfg(k, spec, "cpu", arch=args.arch)) for k in "bc"}
    for m in models.values():
        m.set_workload(workload)
        m.infer()  # warm-up
    times = {k: [] for k in models}
    for rep in range(args.repeats):
        for k in ("bc" if rep % 2 == 0 else "cb"):
            t0 = time.perf_counter()
            models[k].infer()
            times[k].append(time.perf_counter() - t0)
    result = {"threads": args.threads, "arch": args.arch, "image_size": [h, w],
              "images": args.images, "repeats": args.repeats,
              "load_average_end": list(__import__("os").getloadavg())}
    for k, m in models.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            m.infer()
        result[k] = {"median_s": statistics.median(times[k]), "samples_s": times[k],
                     "gn_self_ms": _self_ms(prof, GN_OPS[k]),
                     "top_self_ms": {e.key: e.self_cpu_time_total / 1e3 for e in sorted(
                         prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]}}
    paired = [c / b for b, c in zip(times["b"], times["c"])]
    result["c_to_b"] = result["c"]["median_s"] / result["b"]["median_s"]
    result["c_to_b_paired"] = statistics.median(paired)
    result["c_to_b_paired_range"] = [min(paired), max(paired)]
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
