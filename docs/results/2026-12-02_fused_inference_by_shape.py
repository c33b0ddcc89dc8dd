#!/usr/bin/env python3
"""R50-FPN inference on one 800x1333 image: the GN self time of (b) Detectron2's GN
(native_group_norm) and (c) gn_det's fused op per input shape, from torch.profiler, averaged over
3 profiled calls of each model (alternating), with the number of calls per shape.

    OMP_NUM_THREADS=2 PYTHONPATH=. python3 docs/results/2026-12-02_fused_inference_by_shape.py 2 out.json
"""
import collections
import json
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import gn_det  # noqa: F401  registers gn_det's modules
from gn_det.benchmark import BenchmarkSettings, BenchmarkedModel, build_variant_cfg, make_workload

PROFILED = 3
GN_OP = {"b": "aten::native_group_norm", "c": "gn_det::group_norm_act_forward"}


def main():
    threads, out = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    spec = BenchmarkSettings(variants=("b", "c")).spec((800, 1333), 1)
    workload = make_workload(spec)
    models = {k: BenchmarkedModel(build_variant_cfg(k, spec, "cpu")) for k in "bc"}
    for m in models.values():
        m.set_workload(workload)
        m.infer()  # warm-up
    self_ms = {k: collections.defaultdict(float) for k in models}
    calls = {k: collections.Counter() for k in models}
    for _ in range(PROFILED):
        for k, m in models.items():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                m.infer()
            for e in prof.key_averages(group_by_input_shape=True):
                if e.key == GN_OP[k]:
                    shape = str(e.input_shapes[0])
                    self_ms[k][shape] += e.self_cpu_time_total / 1e3 / PROFILED
                    calls[k][shape] = e.count
    shapes = sorted(set(self_ms["b"]) | set(self_ms["c"]), key=lambda s: -self_ms["b"].get(s, 0))
    rows = [{"shape": s, "calls": calls["b"][s] or calls["c"][s],
             "b_ms": self_ms["b"].get(s, 0.0), "c_ms": self_ms["c"].get(s, 0.0)} for s in shapes]
    for r in rows:
        print(f"{r['shape']:24s} x{r['calls']:<3d} b {r['b_ms']:7.1f}  c {r['c_ms']:7.1f}")
    result = {"threads": threads, "profiled_calls": PROFILED, "load_average_end": list(os.getloadavg()),
              "rows": rows, "total_b_ms": sum(r["b_ms"] for r in rows), "total_c_ms": sum(r["c_ms"] for r in rows)}
    print("total", round(result["total_b_ms"], 1), round(result["total_c_ms"], 1))
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
