#!/usr/bin/env python3
"""Peak RSS and step times of 3 training steps of one variant (b or c), R50-FPN FREEZE_AT 0,
512x512, 2 images, 2 threads, in this fresh process; run once per variant and allocator setting:

    OMP_NUM_THREADS=2 PYTHONPATH=. python3 docs/results/2026-12-02_fused_malloc_peak_rss.py c
    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 OMP_NUM_THREADS=2 \
        PYTHONPATH=. python3 docs/results/2026-12-02_fused_malloc_peak_rss.py c
"""
import sys, resource, time, torch
from detectron2.utils.events import EventStorage
import gn_det
from gn_det.benchmark import BenchmarkSettings, BenchmarkedModel, build_variant_cfg, make_workload
torch.set_num_threads(2)
k = sys.argv[1]
spec = BenchmarkSettings(variants=("b", "c")).spec((512, 512), 2)
m = BenchmarkedModel(build_variant_cfg(k, spec, "cpu", 0, "R50-FPN")); m.set_workload(make_workload(spec))
with EventStorage(0):
    ts = []
    for i in range(3):
        t0 = time.perf_counter(); m.step(0); ts.append(time.perf_counter() - t0)
print(k, "steps_s", [round(t, 2) for t in ts], "maxrss_MiB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
