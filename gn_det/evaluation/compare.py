"""Compare runs: their ``ap_report.json`` side by side, and AP plotted against a run setting.

A run is an output directory (or an ``ap_report.json``). Settings are addressed by dotted paths
into the report: ``iteration``, ``run.ims_per_gpu``, ``run.norm.backbone``, ``run.num_groups``...
(the ``run.`` prefix may be left out).
"""
import os
from collections import OrderedDict
from typing import List, Sequence, Tuple

from .ap_report import REPORT_TASKS, load_ap_report
from .coco_evaluator import SUMMARY_METRICS

__all__ = ["load_runs", "common_dataset", "setting", "comparison_markdown", "plot_comparison"]

Run = Tuple[str, dict]  # (label, report)


def load_runs(paths: Sequence[str]) -> List[Run]:
    """Load each path's report; label a run by its directory name (made unique if needed)."""
    runs = []
    for path in paths:
        report = load_ap_report(path)
        directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        runs.append((os.path.basename(os.path.normpath(directory)) or directory, report))
    labels = [label for label, _ in runs]
    if len(set(labels)) < len(labels):  # e.g. a/output and b/output: use the full paths
        runs = [(os.path.normpath(path), report) for path, (_, report) in zip(paths, runs)]
    return runs


def common_dataset(runs: Sequence[Run], dataset: str = None) -> str:
    """The dataset to compare: ``dataset`` if every run has it, else the first one all share."""
    names = [list(report["datasets"]) for _, report in runs]
    if dataset is not None:
        missing = [label for (label, _), n in zip(runs, names) if dataset not in n]
        if missing:
            raise ValueError(f"dataset {dataset!r} is not in the reports of {missing}")
        return dataset
    shared = [n for n in names[0] if all(n in other for other in names[1:])]
    if not shared:
        raise ValueError(
            "the runs were evaluated on no common dataset: "
            + "; ".join(f"{label}: {n}" for (label, _), n in zip(runs, names))
        )
    return shared[0]


def setting(report: dict, path: str):
    """A run setting by dotted path (``run.`` optional); None when absent."""
    for root in (report, report.get("run", {})):
        node = root
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return None


def _fmt_setting(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 2.0 images per GPU reads as 2
    return str(value)


def _fmt_metric(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def comparison_markdown(runs: Sequence[Run], dataset: str = None, settings: Sequence[str] = (
    "norm.backbone", "norm.fpn", "norm.box_head", "norm.mask_head", "ims_per_gpu", "iteration",
)) -> str:
    """One Markdown table: rows are settings then the 12 summary numbers of bbox and segm,
    columns are runs."""
    dataset = common_dataset(runs, dataset)
    header = "| | " + " | ".join(label for label, _ in runs) + " |"
    lines = [f"### {dataset}", "", header, "|---|" + "---:|" * len(runs)]
    for name in settings:
        lines.append(f"| {name} | " + " | ".join(_fmt_setting(setting(r, name)) for _, r in runs) + " |")
    for task in REPORT_TASKS:
        if not any(task in r["datasets"][dataset] for _, r in runs):
            continue
        for metric in SUMMARY_METRICS:
            cells = [_fmt_metric(r["datasets"][dataset].get(task, {}).get(metric)) for _, r in runs]
            lines.append(f"| {task} {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(
    runs: Sequence[Run],
    output_png: str,
    *,
    x: str = "ims_per_gpu",
    group: str = "norm.backbone",
    metrics: Sequence[str] = ("bbox/AP", "segm/AP"),
    dataset: str = None,
) -> str:
    """Plot each metric (``task/metric``) against setting ``x``, one line per value of ``group``
    (e.g. AP against images per GPU, one line per norm). Returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    dataset = common_dataset(runs, dataset)
    for metric in metrics:
        if "/" not in metric or metric.split("/")[0] not in REPORT_TASKS or metric.split("/")[1] not in SUMMARY_METRICS:
            raise ValueError(
                f"plot metric {metric!r} is not TASK/METRIC with TASK in {REPORT_TASKS} and METRIC in {SUMMARY_METRICS}"
            )
    lines = OrderedDict()
    for label, report in runs:
        lines.setdefault(str(setting(report, group)), []).append((setting(report, x), label, report))
    numeric = all(isinstance(v, (int, float)) for pts in lines.values() for v, _, _ in pts)
    categories = sorted({str(v) for pts in lines.values() for v, _, _ in pts})

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        task, name = metric.split("/")
        for group_value, points in lines.items():
            points = sorted(points, key=lambda p: p[0] if numeric else categories.index(str(p[0])))
            xs = [p[0] if numeric else categories.index(str(p[0])) for p in points]
            ys = [p[2]["datasets"][dataset].get(task, {}).get(name) for p in points]
            ys = [float("nan") if y is None else y for y in ys]
            axis.plot(xs, ys, marker="o", label=f"{group}={group_value}")
        if not numeric:
            axis.set_xticks(range(len(categories)), categories)
        axis.set_xlabel(x)
        axis.set_ylabel(f"{task} {name}")
        axis.set_title(f"{dataset}: {task} {name}")
        axis.grid(True, alpha=0.3)
        axis.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_png)), exist_ok=True)
    fig.savefig(output_png, dpi=100)
    plt.close(fig)
    return output_png
