"""Compiled evidence for the Triton GN(+ReLU) kernels on sm_90, without a GPU.

For every Mask R-CNN GN shape (``gn_det.layers.triton_emulation.MASK_RCNN_GN_SHAPES``) x
fp32/fp16/bf16 x NCHW/channels-last, one GN+ReLU layer's training step (forward, recompute for the
next layer's backward, backward) is run on ``meta`` tensors with Triton's launcher replaced by a
recorder; each recorded launch is compiled for sm_90 the way Triton's launcher would specialize it.
Written per layer: launches (Triton and torch), allocations, and per Triton launch its grid, grid
problems, registers, stack bytes (spills), and global load/store widths.

    PYTHONPATH=. python3 docs/results/2026-12-06_triton_compiled.py --json after.json
    PYTHONPATH=. python3 docs/results/2026-12-06_triton_compiled.py --git-rev 7d972c8 --json before.json
    PYTHONPATH=. python3 docs/results/2026-12-06_triton_compiled.py --summary before.json after.json

``--git-rev`` measures the kernels of an older commit (its ``triton_group_norm.TRITON_BACKEND``).
"""

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import torch

from gn_det.layers.triton_emulation import MASK_RCNN_GN_SHAPES, compile_launch, emulate_layer, grid_problems

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_backend(git_rev):
    if not git_rev:
        from gn_det.layers.triton_launch import TRITON_BACKEND

        return TRITON_BACKEND
    source = subprocess.run(
        ["git", "show", f"{git_rev}:gn_det/layers/triton_group_norm.py"], capture_output=True, text=True, check=True
    ).stdout
    path = tempfile.NamedTemporaryFile(suffix=".py", delete=False, mode="w")
    path.write(source)
    path.close()
    spec = importlib.util.spec_from_file_location(f"triton_group_norm_{git_rev}", path.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TRITON_BACKEND


def serial_trips(launch):
    """Loop trips of one program of a merge (finalize) kernel: its serial latency chain."""
    a = dict(zip(launch.kernel.arg_names, launch.args), **launch.kwargs)
    cdiv = lambda x, y: -(-x // y)  # noqa: E731
    cpg = a.get("channels_per_group", a.get("cpg"))
    if launch.name == "_backward_finalize_kernel":  # before: every split, one after the other
        return a["num_splits"] * cdiv(cpg, a["BLOCK_P"])
    if "finalize" in launch.name:
        sweeps = 2 if "stats" in launch.name else 1
        return sweeps * cdiv(a["num_splits"] * cpg, a["BLOCK_P"])
    return None


def measure(backend, shapes=MASK_RCNN_GN_SHAPES):
    rows = []
    for name, shape, groups in shapes:
        for dtype_name, dtype in DTYPES.items():
            for layout in ("nchw", "channels_last"):
                phases = emulate_layer(backend, shape, groups, dtype, layout == "channels_last")
                row = {"layer": name, "shape": list(shape), "dtype": dtype_name, "layout": layout}
                for phase, report in phases.items():
                    row[phase] = {
                        "triton_launches": [
                            dict(compile_launch(launch).as_dict(), grid=list(launch.grid),
                                 grid_problems=grid_problems(launch.grid), serial_trips=serial_trips(launch))
                            for launch in report.launches
                        ],
                        "torch_kernels": report.torch_kernels,
                        "allocations": len(report.allocations),
                    }
                rows.append(row)
        print(f"{name}: done", file=sys.stderr)
    return rows


def _layer_totals(row):
    launches = sum(len(row[p]["triton_launches"]) + len(row[p]["torch_kernels"]) for p in ("forward", "recompute", "backward"))
    allocations = sum(row[p]["allocations"] for p in ("forward", "recompute", "backward"))
    kernels = [k for p in ("forward", "recompute", "backward") for k in row[p]["triton_launches"]]
    return launches, allocations, kernels


def summary(rows):
    """Per (shape, dtype, layout) class: launches and allocations per training step, the most
    registers, any stack (spills), the narrowest widest-load of the streaming kernels, and the
    longest serial grid (grid problems)."""
    out = []
    for row in rows:
        launches, allocations, kernels = _layer_totals(row)
        out.append({
            "layer": row["layer"], "dtype": row["dtype"], "layout": row["layout"],
            "launches": launches, "allocations": allocations,
            "max_registers": max(k["registers"] for k in kernels),
            "stack_bytes": max(k["stack_bytes"] for k in kernels),
            "widest_x_load_bytes": min(_main_load(k) for k in kernels if k["name"] in STREAMING),
            "grid_problems": sorted({p for k in kernels for p in k["grid_problems"]}),
            "finalize_programs_x_trips": max(
                ((math.prod(k["grid"]), k["serial_trips"]) for k in kernels if k.get("serial_trips")),
                key=lambda pt: pt[1], default=None),
            "kernels": sorted({k["name"] for k in kernels}),
        })
    return out


def _main_load(kernel):
    # The narrowest load of the streamed tensors x and dy (a kernel uses one width per tensor).
    return min(kernel["streamed_load_bytes"])


# Kernels that stream the full tensor (their loads of x/dy set the achievable bandwidth).
STREAMING = {
    prefix + name
    for prefix in ("", "_")  # the kernels before 2026-12-06 had a leading underscore
    for name in (
        "stats_partial_kernel", "normalize_act_kernel", "backward_reduce_kernel", "backward_dx_kernel",
        "group_forward_kernel", "group_backward_kernel",
    )
}


def compare(before, after):
    b = {(r["layer"], r["dtype"], r["layout"]): r for r in summary(before)}
    a = {(r["layer"], r["dtype"], r["layout"]): r for r in summary(after)}
    lines = [
        "| layer | dtype | layout | launches | allocations | max registers | stack (spill) bytes | streamed load width (B) "
        "| longest merge: programs x serial trips | grid problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in b:
        if key not in a:
            continue
        x, y = b[key], a[key]
        cell = lambda k: f"{x[k]} → {y[k]}" if x[k] != y[k] else f"{x[k]}"
        problems = f"{len(x['grid_problems'])} → {len(y['grid_problems'])}"
        merge = lambda r: "none" if not r["finalize_programs_x_trips"] else "{} x {}".format(*r["finalize_programs_x_trips"])  # noqa: E731
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {cell('launches')} | {cell('allocations')} | "
            f"{cell('max_registers')} | {cell('stack_bytes')} | {cell('widest_x_load_bytes')} | "
            f"{merge(x)} → {merge(y)} | {problems} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--git-rev", default="", help="measure the kernels of this commit instead")
    parser.add_argument("--json", default="", help="write the per-layer records here")
    parser.add_argument("--summary", nargs=2, metavar=("BEFORE", "AFTER"), help="print the comparison table")
    args = parser.parse_args(argv)
    if args.summary:
        before, after = (json.load(open(p))["rows"] for p in args.summary)
        print(compare(before, after))
        return
    start = time.time()
    rows = measure(load_backend(args.git_rev))
    record = {
        "what": "one GN+ReLU layer's training step per shape, compiled for sm_90 (no GPU)",
        "git_rev": args.git_rev or "working tree",
        "triton": __import__("triton").__version__,
        "torch": torch.__version__,
        "seconds": round(time.time() - start, 1),
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, separators=(",", ":"))  # compact: ~200 layers x 7 launches
    by_key = defaultdict(int)
    for r in summary(rows):
        by_key[(r["max_registers"], r["stack_bytes"])] += 1
    print(f"{len(rows)} layers in {record['seconds']} s; (max registers, stack bytes): count = {dict(by_key)}")


if __name__ == "__main__":
    main()
