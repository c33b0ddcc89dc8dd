"""Which code computes COCO AP, and the fast path: ``evaluate_predictions``.

Three implementations, one switch (``TEST.COCO_EVAL.IMPL``, ``COCOAPEvaluator(implementation=)``):

- ``"gn_det"`` (default): ``FastCOCOeval`` (Detectron2's C++ matching and accumulation,
  pycocotools' IoU, the empty (image, category) pairs skipped), mask results copied shallowly
  instead of Detectron2's deep copy, and with ``workers > 1`` the categories split over forked
  processes (COCO AP is computed per category; the summary numbers are means over the
  categories' precision/recall, taken once the parts are put back together).
- ``"detectron2"``: Detectron2's default, ``COCOeval_opt`` through its own
  ``_evaluate_predictions_on_coco``.
- ``"pycocotools"``: the official ``COCOeval``, as Detectron2 runs it with ``use_fast_impl=False``.

All three give the same 12 summary numbers and per-category AP (tests/evaluation pin them to
pycocotools' within 1e-9; docs/results/2026-12-06_coco_scale.md measures them at val2017 size).
"""
import contextlib
import copy
import io
import logging
import multiprocessing
import os
import traceback
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "IMPLEMENTATIONS",
    "DEFAULT_IMPLEMENTATION",
    "describe_implementation",
    "fast_impl_available",
    "resolve_workers",
    "evaluate_predictions",
]

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ("gn_det", "detectron2", "pycocotools")
DEFAULT_IMPLEMENTATION = "gn_det"
# Below this many results per worker, forking costs more than it saves (measured: a fork of a
# process holding a val2017-sized evaluation and the merge take ~0.1-0.3 s; 20k detections take
# about that long to evaluate).
_MIN_RESULTS_PER_WORKER = 20_000


def fast_impl_available() -> bool:
    """Whether Detectron2 was built with its C++ COCOeval (``detectron2._C``)."""
    from detectron2.evaluation import coco_evaluation

    return coco_evaluation.COCOeval_opt is not COCOeval


def describe_implementation(implementation: str, workers: int = 1) -> str:
    """One line for logs and the AP report: what computed the numbers."""
    if implementation == "gn_det":
        where = f", categories split over {workers} processes" if workers > 1 else ""
        return ("gn_det FastCOCOeval (Detectron2's C++ COCOeval_opt core, pycocotools IoU, "
                f"empty image/category pairs skipped{where})")
    if implementation == "detectron2":
        return "Detectron2 COCOeval_opt (its default, use_fast_impl=True)"
    if implementation == "pycocotools":
        import pycocotools

        return f"pycocotools {getattr(pycocotools, '__version__', '')} COCOeval (official)".replace("  ", " ")
    raise ValueError(f"COCO evaluation implementation {implementation!r}; valid: {', '.join(IMPLEMENTATIONS)}")


def resolve_workers(workers: int) -> int:
    """``workers`` as a process count >= 1; 0 (the default) is half the available cores, at most
    8, and 1 below 4 cores: measured on a shared 2-core machine, 2 processes took 1.3x the wall
    time of one (the parent's share, the forks and the merge do not pay off without idle cores)."""
    if workers < 0:
        raise ValueError(f"TEST.COCO_EVAL.WORKERS must be >= 0 (0 = automatic), got {workers}")
    if workers == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return 1 if cores < 4 else min(8, cores // 2)
    return workers


def _shards(results: Sequence[Dict], coco_gt: COCO, cat_ids: List[int], count: int) -> List[List[int]]:
    """Split the categories into ``count`` groups of about equal work (detections plus ground
    truth), largest first, each to the least loaded group."""
    work = {c: len(coco_gt.catToImgs.get(c, ())) for c in cat_ids}
    for r in results:
        work[r["category_id"]] = work.get(r["category_id"], 0) + 1
    groups = [[] for _ in range(count)]
    loads = [0] * count
    for cat in sorted(cat_ids, key=lambda c: -work.get(c, 0)):
        i = loads.index(min(loads))
        groups[i].append(cat)
        loads[i] += work.get(cat, 0) + 1
    return [sorted(g) for g in groups if g]


def _results_api(coco_gt: COCO, results: List[Dict], iou_type: str) -> COCO:
    """``coco_gt.loadRes(results)``; a results api without annotations when there are none
    (loadRes cannot read an empty list, and a category group may have no detection)."""
    from .fast_cocoeval import load_results

    if results:
        return load_results(coco_gt, results, iou_type)
    empty = COCO()
    empty.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                     "categories": copy.deepcopy(coco_gt.dataset["categories"])}
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def _evaluated(coco_gt, results, iou_type, cat_ids, img_ids, max_dets, summarize=True):
    from .fast_cocoeval import FastCOCOeval

    coco_eval = FastCOCOeval(coco_gt, _results_api(coco_gt, results, iou_type), iou_type)
    coco_eval.params.maxDets = list(max_dets)
    if cat_ids is not None:
        coco_eval.params.catIds = list(cat_ids)
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    coco_eval.evaluate()
    coco_eval.accumulate()
    if summarize:
        coco_eval.summarize()
    return coco_eval


def _shard_worker(connection, coco_gt, results, iou_type, cat_ids, img_ids, max_dets):
    """In a forked process: evaluate ``cat_ids`` only and send back their accumulated arrays."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval = _evaluated(coco_gt, results, iou_type, cat_ids, img_ids, max_dets, summarize=False)
        e = coco_eval.eval
        connection.send(("ok", {k: e[k] for k in ("precision", "recall", "scores")}))
    except BaseException:  # the parent re-raises it with the traceback
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def _evaluate_in_processes(coco_gt, results, iou_type, img_ids, max_dets, workers):
    from .fast_cocoeval import FastCOCOeval

    cat_ids = sorted(int(c) for c in np.unique(coco_gt.getCatIds()))
    groups = _shards(results, coco_gt, cat_ids, workers)
    group_of = {c: i for i, group in enumerate(groups) for c in group}
    mine = [[] for _ in groups]
    for r in results:  # in their original order, which breaks score ties as in one process
        group = group_of.get(r["category_id"])
        if group is not None:  # COCOeval ignores results of categories the dataset lacks
            mine[group].append(r)
    context = multiprocessing.get_context("fork")  # the children share coco_gt and the results
    jobs = []
    for group, group_results in zip(groups, mine):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_shard_worker,
                                  args=(send, coco_gt, group_results, iou_type, group, img_ids, max_dets), daemon=True)
        process.start()
        send.close()
        jobs.append((group, receive, process))
    parts = []
    for group, receive, process in jobs:
        try:
            status, payload = receive.recv()
        except EOFError:  # it died without a word (killed, out of memory)
            process.join()
            status, payload = "error", f"the process exited with code {process.exitcode} and sent nothing"
        process.join()
        if status != "ok":
            raise RuntimeError(f"COCO evaluation of categories {group} failed:\n{payload}")
        parts.append((group, payload))

    # Put the per-group arrays back in the order of all categories, then summarize as usual.
    position = {c: i for i, c in enumerate(cat_ids)}
    merged = {}
    for key, axis in (("precision", 2), ("recall", 1), ("scores", 2)):
        shape = list(parts[0][1][key].shape)
        shape[axis] = len(cat_ids)
        merged[key] = np.full(shape, -1.0)
        for group, arrays in parts:
            index = [slice(None)] * len(shape)
            index[axis] = [position[c] for c in group]
            merged[key][tuple(index)] = arrays[key]
    coco_eval = FastCOCOeval(coco_gt, _results_api(coco_gt, [], iou_type), iou_type)
    coco_eval.params.maxDets = list(max_dets)
    coco_eval.params.catIds = cat_ids
    if img_ids is not None:
        coco_eval.params.imgIds = list(img_ids)
    p = coco_eval.params
    coco_eval.eval = {"params": p, "counts": [len(p.iouThrs), len(p.recThrs), len(cat_ids), len(p.areaRng), len(p.maxDets)],
                      **merged}
    coco_eval.summarize()
    return coco_eval


def evaluate_predictions(
    coco_gt: COCO,
    coco_results: List[Dict],
    iou_type: str,
    *,
    implementation: str = DEFAULT_IMPLEMENTATION,
    workers: int = 1,
    max_dets_per_image: Optional[Sequence[int]] = None,
    img_ids=None,
    kpt_oks_sigmas=(),
):
    """COCO evaluation of ``coco_results`` (Detectron2's result format) on ``coco_gt``: a
    COCOeval object after ``evaluate``, ``accumulate`` and ``summarize`` (``.stats``, ``.eval``),
    computed by ``implementation`` (see the module docstring). ``workers``: processes for
    ``"gn_det"`` (fewer when there are few results). May set fields of the result dicts, as
    pycocotools' ``loadRes`` does (``area``, ``id``, ``iscrowd``). With several processes the
    returned object holds the merged ``eval`` arrays and ``stats``; its ``cocoDt`` is empty (the
    results were loaded in the worker processes)."""
    from detectron2.evaluation.coco_evaluation import _evaluate_predictions_on_coco

    describe_implementation(implementation)  # a wrong name fails here
    max_dets = list(max_dets_per_image or [1, 10, 100])
    used, workers_used = implementation, 1
    if implementation == "pycocotools" or not fast_impl_available():
        used = "pycocotools"
        coco_eval = _evaluate_predictions_on_coco(
            coco_gt, coco_results, iou_type, kpt_oks_sigmas=kpt_oks_sigmas, cocoeval_fn=COCOeval,
            img_ids=img_ids, max_dets_per_image=max_dets)
    elif implementation == "detectron2" or iou_type not in ("bbox", "segm") or max_dets[2] != 100:
        # Keypoints and a custom detection limit go through Detectron2's own function (it has
        # their special cases); "gn_det" still matches with FastCOCOeval there.
        from detectron2.evaluation.fast_eval_api import COCOeval_opt

        from .fast_cocoeval import FastCOCOeval

        fn = COCOeval_opt if implementation == "detectron2" else FastCOCOeval
        coco_eval = _evaluate_predictions_on_coco(
            coco_gt, coco_results, iou_type, kpt_oks_sigmas=kpt_oks_sigmas, cocoeval_fn=fn,
            img_ids=img_ids, max_dets_per_image=max_dets)
    else:
        if iou_type == "segm":
            # Mask AP sizes objects by their mask: without "bbox", loadRes computes it from the
            # mask (Detectron2 deep-copies all results to drop it; a shallow copy is enough:
            # loadRes and COCOeval only add keys and read compressed RLE masks as they are).
            coco_results = [{k: v for k, v in r.items() if k != "bbox"} for r in coco_results]
        workers_used = min(resolve_workers(workers), max(1, len(coco_results) // _MIN_RESULTS_PER_WORKER))
        if multiprocessing.current_process().daemon:
            workers_used = 1  # a daemonic process (a pool worker) may not start processes
        if workers_used > 1:
            coco_eval = _evaluate_in_processes(coco_gt, coco_results, iou_type, img_ids, max_dets, workers_used)
        else:
            coco_eval = _evaluated(coco_gt, coco_results, iou_type, None, img_ids, max_dets)
    coco_eval.gn_det_description = describe_implementation(used, workers_used)
    return coco_eval
