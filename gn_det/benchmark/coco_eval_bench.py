"""COCO evaluation at val2017 size, side by side (``tools/benchmark.py coco-eval``).

On the generated val2017-sized split (5,000 images, 36,781 objects, 100 detections per image with
boxes and RLE masks; ``coco_scale_data``, ``coco_scale_detections``) each implementation runs the
evaluation a training run does every ``TEST.EVAL_PERIOD``: the evaluator's ``evaluate()`` on
predictions already collected (category ids back to the dataset's, loading the results, COCOeval
evaluate / accumulate / summarize, the 12 numbers and per-category AP), one task at a time.

- ``pycocotools``: gn_det's ``COCOAPEvaluator`` with ``TEST.COCO_EVAL.IMPL pycocotools``, i.e.
  Detectron2's ``COCOEvaluator(use_fast_impl=False)`` plus the six AR numbers: what gn_det ran
  before, and the reference every other row is compared with;
- ``detectron2``: Detectron2's own ``COCOEvaluator`` as it comes (``COCOeval_opt``), the floor
  (it reports the six AP numbers only);
- ``gn_det``: gn_det's ``COCOAPEvaluator`` as configured by default (``TEST.COCO_EVAL.IMPL
  gn_det``, ``WORKERS 0``: half the cores, at most 8, 1 below 4); ``gn_det-wN``: N processes;
- ``faster_coco_eval`` (only if the package is installed): its ``COCOeval_faster`` on the same
  results, loadRes to summarize (no Detectron2 evaluator around it).

Every run is a fresh process (peak RSS from the benchmark's meter, plus the largest worker
process's peak where there are workers); runs are interleaved, in an order rotated every repeat. Wall time, CPU time (the process and its worker processes) and the
ratio to ``detectron2`` in the same repeat; every run's 12 numbers and per-category AP are
compared with the ``pycocotools`` run's (max |difference| in AP points).
"""
import argparse
import json
import os
import resource
import statistics
import time
from typing import Dict, List

from .coco_scale_data import VAL2017, scaled_spec, split_paths, write_split
from .coco_scale_detections import write_detections
from .memory import measure_in_fresh_process
from .report import write_json
from .timing import rotated

__all__ = ["evaluate_once", "run", "add_arguments", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("pycocotools", "detectron2", "gn_det", "faster_coco_eval")
DATASET = "gn_det_coco_scale_val"


def _register(json_file: str, image_root: str):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    from .coco_scale_data import coco_categories

    categories = coco_categories()
    if DATASET not in DatasetCatalog:
        register_coco_instances(DATASET, {
            "thing_classes": [c["name"] for c in categories],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories)},
        }, json_file, image_root)
    return MetadataCatalog.get(DATASET)


def _predictions(results_file: str, metadata) -> List[Dict]:
    """The results as an evaluator holds them after inference: per image, contiguous ids."""
    with open(results_file) as f:
        results = json.load(f)
    to_contiguous = metadata.thing_dataset_id_to_contiguous_id
    by_image = {}
    for r in results:
        r["category_id"] = to_contiguous[r["category_id"]]
        by_image.setdefault(r["image_id"], []).append(r)
    return [{"image_id": i, "instances": v} for i, v in by_image.items()]


def _faster_coco_eval(json_file: str, results_file: str, task: str, meter):
    import contextlib
    import io

    import numpy as np
    from faster_coco_eval import COCO, COCOeval_faster

    with open(results_file) as f:
        results = json.load(f)
    if task == "segm":
        for r in results:
            r.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
    meter.start()
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval_faster(gt, gt.loadRes(results), task, print_function=lambda *a, **k: None)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    precision = np.asarray(coco_eval.eval["precision"])
    per_category = {}
    for k, cat in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_category[names[cat]] = float(np.mean(p)) * 100 if p.size else None
    stats = [float(v) * 100 if v >= 0 else None for v in coco_eval.stats[:12]]
    return wall, cpu, stats, per_category, "faster_coco_eval COCOeval_faster"


def evaluate_once(meter, implementation: str, workers: int, task: str, json_file: str, image_root: str,
                  results_file: str) -> Dict:
    """Fresh-process target: one evaluation of ``task``; returns times, numbers, who computed."""
    import contextlib
    import io
    import logging

    logging.getLogger("detectron2").setLevel(logging.WARNING)
    if implementation == "faster_coco_eval":
        wall, cpu, stats, per_category, who = _faster_coco_eval(json_file, results_file, task, meter)
    else:
        from detectron2.evaluation import COCOEvaluator

        from ..evaluation import SUMMARY_METRICS, COCOAPEvaluator

        metadata = _register(json_file, image_root)
        if implementation == "detectron2":
            evaluator = COCOEvaluator(DATASET, tasks=(task,), distributed=False)  # as it comes
        else:
            evaluator = COCOAPEvaluator(DATASET, tasks=(task,), distributed=False, implementation=implementation,
                                        workers=workers)
        evaluator.reset()
        evaluator._predictions = _predictions(results_file, metadata)  # as process() leaves them
        meter.start()
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            results = evaluator.evaluate()[task]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stats = [results.get(m) if m in results else None for m in SUMMARY_METRICS]
        if implementation == "detectron2":  # Detectron2 keeps only the six AP numbers
            stats = stats[:6] + [None] * 6
        stats = [None if v is None or v != v else float(v) for v in stats]
        per_category = {k[3:]: (None if v != v else float(v)) for k, v in results.items() if k.startswith("AP-")}
        who = ("Detectron2 COCOEvaluator (COCOeval_opt)" if implementation == "detectron2"
               else evaluator.evaluated_by.get(task))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss of the children: the largest worker process's peak (KiB on Linux), 0 without any.
    return {"wall_s": wall, "cpu_s": cpu + children.ru_utime + children.ru_stime, "stats": stats,
            "per_category": per_category, "evaluated_by": who, "worker_peak_rss_mib": children.ru_maxrss / 1024}


def _max_difference(run: Dict, reference: Dict) -> float:
    """Largest |difference| in AP points over the numbers both have."""
    pairs = list(zip(run["stats"], reference["stats"]))
    pairs += [(run["per_category"].get(k), v) for k, v in reference["per_category"].items()]
    diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    # A number one run has and the other lacks (NaN: no object of that size) is a difference,
    # except the AR numbers Detectron2's own evaluator does not report.
    missing = [1 for i, (a, b) in enumerate(pairs) if (a is None) != (b is None) and not (6 <= i < 12 and a is None)]
    return float("inf") if missing else max(diffs, default=0.0)


def _variants(names: List[str]) -> List[tuple]:
    out = []
    for name in names:
        implementation, _, workers = name.partition("-w")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"--implementations: {name!r}; valid: {', '.join(IMPLEMENTATIONS)} "
                             "(gn_det-wN: N worker processes)")
        # "gn_det" alone is the default setting (WORKERS 0: one process per core).
        out.append((name, implementation, int(workers) if workers else (0 if implementation == "gn_det" else 1)))
    return out


def run(args: argparse.Namespace) -> Dict:
    variants = _variants(args.implementations)
    if any(v[1] == "faster_coco_eval" for v in variants):
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError:
            print("faster_coco_eval is not installed: its rows are left out (pip install faster-coco-eval)")
            variants = [v for v in variants if v[1] != "faster_coco_eval"]
    spec, root = scaled_spec(VAL2017, args.dir, args.scale)
    data = write_split(root, spec)
    results_file = os.path.join(root, f"detections_{spec.split}.json")
    dets = write_detections(data["json_file"], results_file)
    json_file, image_root = split_paths(root, spec.split)
    load_before = os.getloadavg()
    print(f"COCO evaluation, {data['images']} images, {data['annotations']} objects, {dets['detections']} "
          f"detections; load average before {load_before[0]:.2f}")
    runs = {task: {name: [] for name, _, _ in variants} for task in args.tasks}
    for repeat in range(args.repeats):
        for task in args.tasks:
            for name, implementation, workers in rotated(variants, repeat):
                measured = measure_in_fresh_process(
                    "gn_det.benchmark.coco_eval_bench:evaluate_once",
                    dict(implementation=implementation, workers=workers, task=task, json_file=json_file,
                         image_root=image_root, results_file=results_file),
                    what=f"{name} {task} evaluation", timeout_s=3600)
                measured["peak_rss_mib"] = (measured["baseline_bytes"] + measured["peak_growth_bytes"]) / 2**20
                runs[task][name].append(measured)
                print(f"  repeat {repeat} {task:4s} {name:18s} {measured['wall_s']:7.2f} s wall "
                      f"{measured['cpu_s']:7.2f} s CPU, peak RSS {measured['peak_rss_mib']:.0f} MiB", flush=True)
    summary = _summarize(runs, variants)
    result = {"data": data, "detections": dets, "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "repeats": args.repeats, "runs": runs, "summary": summary}
    print(format_markdown(result))
    if args.output:
        write_json(result, args.output)
    return result


def _summarize(runs: Dict, variants) -> Dict:
    summary = {}
    for task, by_name in runs.items():
        reference = by_name.get("pycocotools", [None])[0]
        floor = by_name.get("detectron2")
        rows = {}
        for name, measured in by_name.items():
            row = {key: statistics.median(m.get(key, 0) for m in measured)
                   for key in ("wall_s", "cpu_s", "peak_rss_mib", "worker_peak_rss_mib")}
            row["evaluated_by"] = measured[0]["evaluated_by"]
            if floor:
                row["wall_vs_detectron2"] = statistics.median(m["wall_s"] / f["wall_s"] for m, f in zip(measured, floor))
                row["cpu_vs_detectron2"] = statistics.median(m["cpu_s"] / f["cpu_s"] for m, f in zip(measured, floor))
            if reference:
                row["max_abs_diff_vs_pycocotools"] = max(_max_difference(m, reference) for m in measured)
            rows[name] = row
        summary[task] = rows
    return summary


def format_markdown(result: Dict) -> str:
    lines = []
    for task, rows in result["summary"].items():
        lines += [f"\n{task}: median of {result['repeats']} (ratios: same repeat, to Detectron2's default)", "",
                  "| implementation | wall s | CPU s | wall × detectron2 | CPU × detectron2 | peak RSS MiB (largest worker) | max \\|Δ\\| vs pycocotools (AP points) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in rows.items():
            diff = r.get("max_abs_diff_vs_pycocotools")
            memory = f"{r['peak_rss_mib']:.0f}"
            if r.get("worker_peak_rss_mib") and "processes" in (r.get("evaluated_by") or ""):
                memory += f" ({r['worker_peak_rss_mib']:.0f})"
            cells = [f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r.get('wall_vs_detectron2', float('nan')):.2f}",
                     f"{r.get('cpu_vs_detectron2', float('nan')):.2f}", memory,
                     "n/a" if diff is None else f"{diff:.2g}"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    before, after = result["load_average_before"], result["load_average_after"]
    lines.append(f"\nLoad average (1 min) before {before[0]:.2f}, after {after[0]:.2f}.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=os.path.join("output", "coco_scale"),
                        help="where the generated data lives (made once, reused; default output/coco_scale)")
    parser.add_argument("--tasks", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--implementations", nargs="+",
                        default=["pycocotools", "detectron2", "gn_det", "gn_det-w2", "faster_coco_eval"],
                        help="any of pycocotools detectron2 gn_det (default WORKERS: one per core) gn_det-wN "
                             "faster_coco_eval")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of val2017's size (1.0: 5,000 images)")
    parser.add_argument("--output", help="write the numbers as JSON to this path")
