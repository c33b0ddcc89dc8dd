"""A sweep's results: ``sweep.json``, a Markdown table and the AP-vs-images-per-GPU plot.

Everything here reads the cell directories only (``sweep_run.json``, the trainer's final
``ap_report.json``, ``train_time.json``), so the outputs can be re-rendered at any time from
whatever has finished (``tools/sweep.py --plot-only``).

``sweep.json`` schema (AP in COCO percent, 0-100; ``null`` where not available)::

    {
      "format": "gn_det.sweep/1",
      "sweep": {... what was swept: base config, norms, images_per_gpu, seeds, num_gpus ...},
      "runs": [{"name", "norm", "images_per_gpu", "seed", "status": "finished" | "pending" |
                "failed", "output_dir", "ims_per_batch", "base_lr", "max_iter", "images_seen",
                "dataset", "bbox_AP", "segm_AP", "bbox_AP50", "segm_AP50",
                "train_seconds", "train_seconds_complete", "wall_seconds"}, ...],
      "cells": [{"norm", "images_per_gpu", "num_seeds", "bbox_AP": {"mean", "min", "max"},
                 "segm_AP": {...}, "train_seconds_mean"}, ...]
    }
"""

import glob
import json
import os
import statistics
from typing import Dict, List, Optional, Sequence

from .cell import load_train_time
from .plan import RUNS_DIR
from .runner import RUN_STATE_NAME, final_ap_report, load_run_state

__all__ = [
    "SWEEP_FORMAT",
    "SWEEP_JSON_NAME",
    "SWEEP_TABLE_NAME",
    "SWEEP_PLOT_NAME",
    "collect_runs",
    "summarize_cells",
    "build_sweep_report",
    "format_sweep_markdown",
    "plot_sweep",
    "write_sweep_outputs",
]

SWEEP_FORMAT = "gn_det.sweep/1"
SWEEP_JSON_NAME = "sweep.json"
SWEEP_TABLE_NAME = "sweep.md"
SWEEP_PLOT_NAME = "sweep.png"
_TASKS = (("segm", "mask"), ("bbox", "box"))


def _metric(report: dict, dataset: str, task: str, key: str = "AP") -> Optional[float]:
    section = report.get("datasets", {}).get(dataset, {}).get(task)
    return None if section is None else section.get(key)


def _run_entry(output_dir: str, state: dict) -> dict:
    max_iter = state["max_iter"]
    report = final_ap_report(output_dir, max_iter)
    attempts = state.get("attempts", [])
    if report is not None:
        status = "finished"
    elif attempts and not attempts[-1].get("finished"):
        status = "failed"
    else:
        status = "pending"
    datasets = state.get("test_datasets") or []
    dataset = datasets[0] if datasets else None
    segments = load_train_time(output_dir)
    timed = sorted((s["start_iter"], s["end_iter"]) for s in segments)
    # Complete when the timed segments cover 0..MAX_ITER without a gap (a segment killed before
    # its end records nothing; its resumed part is timed from its checkpoint on).
    covered, complete = 0, bool(timed)
    for start, end in timed:
        if start > covered:
            complete = False
        covered = max(covered, end)
    complete = complete and covered >= max_iter
    entry = {
        key: state.get(key)
        for key in (
            "name",
            "norm",
            "norm_slug",
            "images_per_gpu",
            "seed",
            "num_gpus",
            "ims_per_batch",
            "base_lr",
            "max_iter",
            "images_seen",
        )
    }
    entry.update(
        {
            "status": status,
            "output_dir": output_dir,
            "dataset": dataset,
            "train_seconds": round(sum(s["seconds"] for s in segments), 1) if segments else None,
            "train_seconds_complete": complete,
            "wall_seconds": round(sum(a.get("wall_seconds", 0.0) for a in attempts), 1) if attempts else None,
        }
    )
    for task, _ in _TASKS:
        for key in ("AP", "AP50"):
            entry[f"{task}_{key}"] = _metric(report, dataset, task, key) if report else None
    return entry


def collect_runs(sweep_dir: str, names: Optional[Sequence[str]] = None) -> List[dict]:
    """One entry per cell directory under ``<sweep_dir>/runs`` (only ``names`` if given, in that
    order), with its status, AP and times; cells without ``sweep_run.json`` are skipped."""
    runs_dir = os.path.join(sweep_dir, RUNS_DIR)
    if names is None:
        paths = sorted(glob.glob(os.path.join(runs_dir, "*", RUN_STATE_NAME)))
        dirs = [os.path.dirname(p) for p in paths]
    else:
        dirs = [os.path.join(runs_dir, n) for n in names]
    entries = []
    for d in dirs:
        state = load_run_state(d)
        if state is not None:
            entries.append(_run_entry(d, state))
    return entries


def _spread(values: List[float]) -> Optional[dict]:
    if not values:
        return None
    return {"mean": round(statistics.fmean(values), 4), "min": min(values), "max": max(values)}


def summarize_cells(runs: List[dict]) -> List[dict]:
    """Per (norm, images/GPU): the number of finished seeds and mean/min/max of box and mask AP."""
    cells: Dict[tuple, dict] = {}
    for run in runs:
        key = (run["norm"], run["images_per_gpu"])
        cell = cells.setdefault(
            key, {"norm": run["norm"], "images_per_gpu": run["images_per_gpu"], "runs": []}
        )
        cell["runs"].append(run)
    summary = []
    for cell in cells.values():
        finished = [r for r in cell["runs"] if r["status"] == "finished"]
        out = {
            "norm": cell["norm"],
            "images_per_gpu": cell["images_per_gpu"],
            "num_seeds": len(finished),
            "num_planned": len(cell["runs"]),
        }
        for task, _ in _TASKS:
            out[f"{task}_AP"] = _spread([r[f"{task}_AP"] for r in finished if r[f"{task}_AP"] is not None])
        times = [r["train_seconds"] for r in finished if r["train_seconds"] is not None]
        out["train_seconds_mean"] = round(statistics.fmean(times), 1) if times else None
        summary.append(out)
    return summary


def build_sweep_report(runs: List[dict], sweep_info: dict) -> dict:
    return {"format": SWEEP_FORMAT, "sweep": sweep_info, "runs": runs, "cells": summarize_cells(runs)}


def _ordered(values, preferred: Optional[Sequence] = None) -> list:
    seen = list(dict.fromkeys(values))
    if preferred:
        return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]
    return seen


def _format_ap(spread: Optional[dict], num_seeds: int) -> str:
    if spread is None:
        # Finished without a number: COCOeval had no detections to score (Detectron2 gives NaN).
        return "n/a" if num_seeds else "—"
    text = f"{spread['mean']:.1f}"
    if num_seeds > 1:
        text += f" ({spread['min']:.1f}–{spread['max']:.1f})"
    return text


def format_sweep_markdown(report: dict) -> str:
    """Two tables (mask AP, box AP: norms x images/GPU; mean over seeds, min–max in brackets when
    several) and one row per run with its solver values and times. "—": not finished; "n/a":
    finished, but COCOeval had no detections to score."""
    info = report.get("sweep", {})
    cells = report["cells"]
    norms = _ordered([c["norm"] for c in cells], info.get("norms"))
    ipgs = sorted({c["images_per_gpu"] for c in cells})
    by_key = {(c["norm"], c["images_per_gpu"]): c for c in cells}
    lines = []
    dataset = next((r["dataset"] for r in report["runs"] if r.get("dataset")), None)
    if dataset:
        lines.append(f"COCO AP on `{dataset}` (mean over seeds; min–max in brackets when several seeds).")
        lines.append("")
    for task, label in _TASKS:
        lines.append(f"| {label} AP | " + " | ".join(f"{n} img/GPU" for n in ipgs) + " |")
        lines.append("|---|" + "---:|" * len(ipgs))
        for norm in norms:
            row = []
            for n in ipgs:
                cell = by_key.get((norm, n))
                row.append("—" if cell is None else _format_ap(cell[f"{task}_AP"], cell["num_seeds"]))
            lines.append(f"| {norm} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append(
        "| run | norm | img/GPU | seed | status | images/iter | LR | iterations | box AP | mask AP | train s | wall s |"
    )
    lines.append("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")

    def num(value, fmt="{:.1f}", missing="—"):
        return missing if value is None else fmt.format(value)

    for r in report["runs"]:
        no_ap = "n/a" if r["status"] == "finished" else "—"
        train = num(r["train_seconds"], "{:.0f}")
        if r["train_seconds"] is not None and not r["train_seconds_complete"]:
            train += " (part)"
        lines.append(
            f"| {r['name']} | {r['norm']} | {r['images_per_gpu']} | {r['seed']} | {r['status']} | "
            f"{r['ims_per_batch']} | {num(r['base_lr'], '{:g}')} | {r['max_iter']} | "
            f"{num(r['bbox_AP'], missing=no_ap)} | {num(r['segm_AP'], missing=no_ap)} | {train} | "
            f"{num(r['wall_seconds'], '{:.0f}')} |"
        )
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict, path: str, title: Optional[str] = None) -> str:
    """Mask AP and box AP against images per GPU (log2 axis), one line per norm through the mean
    over seeds; with several seeds, a bar from the lowest to the highest seed and the seeds as dots.
    Writes a PNG to ``path`` and returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = report.get("sweep", {})
    cells = [c for c in report["cells"] if c["num_seeds"] > 0]
    norms = _ordered([c["norm"] for c in cells], info.get("norms"))
    ipgs = sorted({c["images_per_gpu"] for c in report["cells"]}) or [1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (task, label) in zip(axes, _TASKS):
        for i, norm in enumerate(norms):
            points = sorted(
                (c["images_per_gpu"], c[f"{task}_AP"])
                for c in cells
                if c["norm"] == norm and c[f"{task}_AP"] is not None
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            means = [p[1]["mean"] for p in points]
            color = f"C{i}"
            ax.plot(xs, means, marker="o", color=color, label=norm)
            low = [p[1]["mean"] - p[1]["min"] for p in points]
            high = [p[1]["max"] - p[1]["mean"] for p in points]
            if any(v > 0 for v in low + high):
                ax.errorbar(xs, means, yerr=[low, high], fmt="none", ecolor=color, capsize=4, alpha=0.7)
            seeds = [
                (r["images_per_gpu"], r[f"{task}_AP"])
                for r in report["runs"]
                if r["norm"] == norm and r["status"] == "finished" and r[f"{task}_AP"] is not None
            ]
            if len(seeds) > len(points):
                ax.scatter([s[0] for s in seeds], [s[1] for s in seeds], color=color, s=10, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ipgs)
        ax.set_xticklabels([str(n) for n in ipgs])
        ax.minorticks_off()
        if len(ipgs) == 1:
            ax.set_xlim(ipgs[0] / 1.5, ipgs[0] * 1.5)
        ax.set_xlabel("images per GPU")
        ax.set_ylabel(f"{label} AP")
        ax.set_title(f"{label} AP")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_sweep_outputs(
    sweep_dir: str, sweep_info: dict, names: Optional[Sequence[str]] = None
) -> Dict[str, str]:
    """Collect the cells, write ``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``sweep_dir``;
    return their paths."""
    runs = collect_runs(sweep_dir, names)
    report = build_sweep_report(runs, sweep_info)
    paths = {
        "json": os.path.join(sweep_dir, SWEEP_JSON_NAME),
        "markdown": os.path.join(sweep_dir, SWEEP_TABLE_NAME),
        "plot": os.path.join(sweep_dir, SWEEP_PLOT_NAME),
    }
    with open(paths["json"] + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(paths["json"] + ".tmp", paths["json"])
    with open(paths["markdown"], "w") as f:
        f.write(format_sweep_markdown(report))
    dataset = next((r["dataset"] for r in runs if r.get("dataset")), None)
    title = "AP vs images per GPU" + (f" ({dataset})" if dataset else "")
    plot_sweep(report, paths["plot"], title=title)
    return paths
