"""``ap_report.json`` and its Markdown table: the box and mask AP of one evaluation.

Schema (numbers are COCO percentages, 0-100; ``null`` where COCOeval cannot compute one, e.g. no
object of that size)::

    {
      "format": "gn_det.ap_report/1",
      "weights": "output/model_final.pth" | null,
      "iteration": 1999 | null,
      "run": {"config_file", "output_dir", "norm": {component: name}, "num_groups",
              "weight_std", "ims_per_batch", "world_size", "ims_per_gpu", "max_iter", "base_lr"},
      "datasets": {
        "<dataset name>": {
          "num_images": 100,
          "bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
                   "per_category": {"<class>": AP, ...},
                   "evaluated_by": "gn_det FastCOCOeval (...)" | absent},
          "segm": {...same...}
        }
      }
    }

``evaluated_by`` names the code that computed the numbers (``TEST.COCO_EVAL.IMPL``); reports
written before it existed have none.
"""
import json
import math
import os
from typing import Dict, Mapping, Optional

from .coco_evaluator import SUMMARY_METRICS

__all__ = [
    "REPORT_FORMAT",
    "REPORT_TASKS",
    "run_info_from_config",
    "build_ap_report",
    "format_ap_report_markdown",
    "write_ap_report",
    "load_ap_report",
]

REPORT_FORMAT = "gn_det.ap_report/1"
REPORT_TASKS = ("bbox", "segm")
JSON_NAME = "ap_report.json"
MARKDOWN_NAME = "ap_report.md"

# Report name of a component -> config key of its norm (Detectron2's keys, plus gn_det's RPN key).
_NORM_KEYS = {
    "backbone": ("MODEL", "RESNETS", "NORM"),
    "fpn": ("MODEL", "FPN", "NORM"),
    "rpn_head": ("MODEL", "RPN", "NORM"),
    "box_head": ("MODEL", "ROI_BOX_HEAD", "NORM"),
    "mask_head": ("MODEL", "ROI_MASK_HEAD", "NORM"),
}


def _number(value) -> Optional[float]:
    """A finite float rounded for reading, or None (json has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 4)


def _lookup(cfg, path):
    node = cfg
    for part in path:
        if part not in node:
            return None
        node = node[part]
    return node


def run_info_from_config(cfg, world_size: int, config_file: str = "") -> dict:
    """What a reader needs to tell runs apart: norms, batch per GPU, schedule.

    ``ims_per_gpu`` is ``IMS_PER_BATCH / REFERENCE_WORLD_SIZE`` when the config sets a reference
    world size (Detectron2 then keeps the per-GPU batch fixed), else ``IMS_PER_BATCH / world_size``.
    """
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE or world_size
    gn = _lookup(cfg, ("MODEL", "GN"))
    return {
        "config_file": config_file,
        "output_dir": cfg.OUTPUT_DIR,
        "norm": {name: _lookup(cfg, path) for name, path in _NORM_KEYS.items()},
        "num_groups": None if gn is None else gn.NUM_GROUPS,
        "channels_per_group": None if gn is None else gn.CHANNELS_PER_GROUP,
        "weight_std": None if gn is None else gn.WEIGHT_STD,
        "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "world_size": world_size,
        "ims_per_gpu": cfg.SOLVER.IMS_PER_BATCH / max(1, reference),
        "max_iter": cfg.SOLVER.MAX_ITER,
        "base_lr": cfg.SOLVER.BASE_LR,
    }


def _task_section(metrics: Mapping[str, float], class_names, evaluated_by: Optional[str]) -> dict:
    section = {name: _number(metrics.get(name)) for name in SUMMARY_METRICS}
    section["per_category"] = {
        name: _number(metrics.get("AP-" + name)) for name in class_names if "AP-" + name in metrics
    }
    if evaluated_by:
        section["evaluated_by"] = evaluated_by
    return section


def build_ap_report(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    class_names: Mapping[str, list],
    num_images: Mapping[str, int],
    run: dict,
    weights: Optional[str] = None,
    iteration: Optional[int] = None,
    evaluated_by: Optional[Mapping[str, Mapping[str, str]]] = None,
) -> dict:
    """Assemble the report.

    Args:
        results: dataset name -> task ("bbox", "segm", ...) -> Detectron2 metric dict (as returned
            by ``COCOAPEvaluator.evaluate``). Tasks other than bbox/segm are left out.
        class_names: dataset name -> its ``thing_classes`` (order of the per-category table).
        num_images: dataset name -> number of evaluated images.
        run: ``run_info_from_config(...)``.
        weights, iteration: the evaluated checkpoint and its training iteration, where known.
        evaluated_by: dataset name -> task -> what computed it (``COCOAPEvaluator.evaluated_by``).
    """
    datasets = {}
    for name, by_task in results.items():
        entry = {"num_images": num_images.get(name)}
        for task in REPORT_TASKS:
            if task in by_task:
                entry[task] = _task_section(by_task[task], class_names.get(name) or [],
                                            ((evaluated_by or {}).get(name) or {}).get(task))
        datasets[name] = entry
    return {
        "format": REPORT_FORMAT,
        "weights": weights,
        "iteration": iteration,
        "run": run,
        "datasets": datasets,
    }


def _cell(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_ap_report_markdown(report: dict) -> str:
    """Markdown: per dataset, the 12 summary numbers (rows) for bbox and segm (columns), then
    per-category AP."""
    lines = []
    source = report.get("weights") or "model"
    if report.get("iteration") is not None:
        source += f" (iteration {report['iteration']})"
    for name, entry in report["datasets"].items():
        tasks = [t for t in REPORT_TASKS if t in entry]
        lines.append(f"### {name}: {entry.get('num_images')} images, {source}")
        lines.append("")
        if not tasks:
            lines.append("No COCO metrics (the dataset has no annotations, or no predictions).")
            lines.append("")
            continue
        engines = sorted({entry[t]["evaluated_by"] for t in tasks if entry[t].get("evaluated_by")})
        if engines:
            lines.append("Computed by " + "; ".join(engines) + ".")
            lines.append("")
        lines.append("| metric | " + " | ".join(tasks) + " |")
        lines.append("|---|" + "---:|" * len(tasks))
        for metric in SUMMARY_METRICS:
            lines.append(f"| {metric} | " + " | ".join(_cell(entry[t][metric]) for t in tasks) + " |")
        categories = list(entry[tasks[0]]["per_category"])
        if categories:
            lines.append("")
            lines.append("| category | " + " | ".join(f"{t} AP" for t in tasks) + " |")
            lines.append("|---|" + "---:|" * len(tasks))
            for category in categories:
                lines.append(
                    f"| {category} | "
                    + " | ".join(_cell(entry[t]["per_category"].get(category)) for t in tasks)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def write_ap_report(report: dict, output_dir: str) -> Dict[str, str]:
    """Write ``ap_report.json`` and ``ap_report.md`` into ``output_dir``; return their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {"json": os.path.join(output_dir, JSON_NAME), "markdown": os.path.join(output_dir, MARKDOWN_NAME)}
    for kind, text in (
        ("json", json.dumps(report, indent=2)),
        ("markdown", format_ap_report_markdown(report)),
    ):
        tmp = paths[kind] + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, paths[kind])  # readers never see half a report
    return paths


def load_ap_report(path: str) -> dict:
    """Read a report from its json file or from the output directory that holds it."""
    if os.path.isdir(path):
        path = os.path.join(path, JSON_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no {JSON_NAME} at {path!r}: run evaluation first (tools/train_net.py --eval-only or "
            "tools/evaluate.py) or pass the directory that holds it"
        )
    with open(path) as f:
        report = json.load(f)
    if report.get("format") != REPORT_FORMAT:
        raise ValueError(f"{path!r} is not a gn_det AP report (format {report.get('format')!r}, "
                         f"expected {REPORT_FORMAT!r})")
    return report
