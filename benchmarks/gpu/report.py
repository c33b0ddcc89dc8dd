"""Rows and the Markdown page of the GPU run (``run_gpu.py`` writes ``results.md`` with this)."""
from typing import Dict, List

import torch


def _passes(x: torch.Tensor, groups: int):
    """Full-tensor passes (reads + writes) of the Triton kernels at their floor: forward, and a
    training step (forward, the recompute for the next layer, backward). Whole groups: forward
    reads x and writes y; backward reads dy and x and writes dx. Split groups read x (and dy)
    once more for the statistics (the sums)."""
    from gn_det.layers.triton_launch import TRITON_BACKEND, dense

    whole = TRITON_BACKEND.plan(dense(x), groups).whole_groups
    forward, backward = (2, 3) if whole else (3, 5)
    return forward, forward + 2 + backward, "whole groups" if whole else "split groups"


def layer_row(name, shape, dtype, layout, ms: Dict[str, float], x: torch.Tensor, groups: int) -> Dict:
    forward, train, path = _passes(x, groups)
    nbytes = x.numel() * x.element_size()
    gbps = lambda passes, t: passes * nbytes / (t * 1e-3) / 1e9  # noqa: E731
    copy = gbps(2, ms["copy"])
    return dict(
        layer=name, shape=list(shape), dtype=dtype, layout=layout, path=path,
        **{f"{k}_ms": round(v, 4) for k, v in ms.items()},
        infer_speedup=ms["torch_infer"] / ms["fused_infer"], train_speedup=ms["torch_train"] / ms["fused_train"],
        fused_infer_gbps=gbps(forward, ms["fused_infer"]), fused_train_gbps=gbps(train, ms["fused_train"]),
        copy_gbps=copy, fused_train_of_copy=gbps(train, ms["fused_train"]) / copy,
    )


def _table(header: List[str], rows: List[List[object]]) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: Dict) -> str:
    steps = results["steps"]
    out = [f"# GPU run of the fused GN kernels{' (dry run on CPU)' if results['dry_run'] else ''}",
           f"Started {results['started']}, budget {results['budget_s']:.0f} s.", ""]
    out.append(_table(["step", "status", "seconds"],
                      [[n, r.get("status", ""), r.get("seconds", "")] for n, r in steps.items()]))
    env = steps.get("environment", {})
    if env:
        out += ["", "## Environment", "", ", ".join(f"{k}: {v}" for k, v in env.items() if k not in ("status", "seconds"))]
    check = steps.get("correctness", {})
    if "kernel_tests" in check:
        out += ["", "## Correctness", "", f"Triton kernel tests: `{check['kernel_tests']['summary']}` "
                f"(exit {check['kernel_tests']['returncode']}; output in triton_tests.txt)."]
    if "model_step" in check:
        m = check["model_step"]
        out += ["", f"{m['model']}, one training step, MODEL.GN.FUSED True vs False: {m['within_tolerance']} of "
                f"{m['compared']} losses and gradients within the CPU tests' tolerance (ratio <= 1). Largest ratios: "
                + ", ".join(f"{n} {r}" for r, n in m["worst"])]
    verdicts = check.get("verdicts", []) + steps.get("models", {}).get("verdicts", [])
    if verdicts:
        seen = {}
        for v in verdicts:
            seen[v["variant"]] = v
        out += ["", "Checked mode, per kernel variant:", "",
                _table(["variant", "status", "phases", "reason"],
                       [[v["variant"], v["status"], ", ".join(v["phases"]), v["reason"]] for v in seen.values()])]
    rows = steps.get("layers", {}).get("rows", [])
    if rows:
        out += ["", "## GN+ReLU layers: fused vs nn.GroupNorm + ReLU", "",
                "x = torch time / fused time; bandwidth at the Triton kernels' traffic floor vs a copy of the same tensor.", "",
                _table(["layer", "shape", "dtype", "layout", "path", "torch infer ms", "fused infer ms", "infer x",
                        "torch train ms", "fused train ms", "train x", "fused train GB/s", "copy GB/s", "of copy"],
                       [[r["layer"], "x".join(map(str, r["shape"])), r["dtype"], r["layout"], r["path"],
                         r["torch_infer_ms"], r["fused_infer_ms"], r["infer_speedup"], r["torch_train_ms"],
                         r["fused_train_ms"], r["train_speedup"], r["fused_train_gbps"], r["copy_gbps"],
                         r["fused_train_of_copy"]] for r in rows])]
    rows = steps.get("models", {}).get("rows", [])
    if rows:
        out += ["", "## Whole models", "",
                _table(["variant", "images", "dtype", "train step ms", "inference ms", "train peak MiB",
                        "first step peak MiB", "inference peak MiB", "first step s"],
                       [[r["variant"], r["images"], r["dtype"], r["train_step_ms"], r["inference_ms"],
                         r["train_peak_mib"], r["first_step_peak_mib"], r["inference_peak_mib"], r["first_step_s"]]
                        for r in rows])]
    for name, r in steps.items():
        if r.get("error"):
            out += ["", f"## Error in {name}", "", "```", r["error"][-3000:], "```"]
    return "\n".join(out) + "\n"
