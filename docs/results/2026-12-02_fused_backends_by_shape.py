#!/usr/bin/env python3
"""Per GN shape, wall-clock forward+backward (and forward without grad) of: the plain path
(nn.GroupNorm then ReLU, what Detectron2 runs), the fused op with gn_det's C++ kernels
(backend "cpu") and the fused op with PyTorch's kernels (backend "torch"). The fused times
include recomputing the output for the next layer's backward, as in a model.

Shapes: those a `tools/benchmark.py model` result recorded in its layer section (--from-json),
so each model's own GN layers are measured.

    OMP_NUM_THREADS=2 PYTHONPATH=. python3 docs/results/2026-12-02_fused_backends_by_shape.py \
        --threads 2 --from-json docs/results/2026-12-02_fused_matrix_r18_t2.json --repeats 15
"""
import argparse
import json

import torch

from gn_det.benchmark.layer_timing import benchmark_group_norm


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--from-json", required=True, nargs="+")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shapes, seen = [], set()
    for path in args.from_json:
        with open(path) as f:
            layers = json.load(f)["layers"]
        arch = layers["shapes_from"].get("arch", "R50-FPN")
        for r in layers["shapes"]:
            key = (tuple(r["shape"]), r["groups"])
            if key not in seen:
                seen.add(key)
                shapes.append((f"{arch}: {', '.join(r['where'])} x{r['calls_per_step']}",
                               tuple(r["shape"]), r["groups"], r["calls_per_step"]))
    rows = []
    for name, shape, groups, calls in shapes:
        out = {"name": name, "shape": shape, "groups": groups, "calls_per_step": calls}
        for backend in ("cpu", "torch"):
            [r] = benchmark_group_norm([(name, shape, groups)], "cpu", repeats=args.repeats,
                                       backend=backend, timer="wall")
            out["plain_train_ms_" + backend] = r["torch_train_ms"]
            out["plain_infer_ms_" + backend] = r["torch_infer_ms"]
            out[f"fused_{backend}_train_ms"] = r["fused_train_ms"]
            out[f"fused_{backend}_infer_ms"] = r["fused_infer_ms"]
        # The plain path was timed beside each backend; keep the mean of its two medians.
        out["plain_train_ms"] = (out.pop("plain_train_ms_cpu") + out.pop("plain_train_ms_torch")) / 2
        out["plain_infer_ms"] = (out.pop("plain_infer_ms_cpu") + out.pop("plain_infer_ms_torch")) / 2
        rows.append(out)
        print(f"{name:60s} {str(shape):22s} train plain {out['plain_train_ms']:7.2f} cpu "
              f"{out['fused_cpu_train_ms']:7.2f} torch {out['fused_torch_train_ms']:7.2f} | infer plain "
              f"{out['plain_infer_ms']:6.2f} cpu {out['fused_cpu_infer_ms']:6.2f} torch "
              f"{out['fused_torch_infer_ms']:6.2f}", flush=True)
    result = {"threads": args.threads, "repeats": args.repeats, "timer": "wall", "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
