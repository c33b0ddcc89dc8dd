"""Detectron2's COCOEvaluator, keeping all 12 COCOeval summary numbers for boxes and masks,
computed by the implementation the config names.

Detectron2 keeps only the six AP numbers of ``COCOeval.stats``; the six AR numbers (AR1, AR10,
AR100, ARs, ARm, ARl) are added here, read from the same ``COCOeval`` object. Per-category AP is
Detectron2's (``AP-<class name>``). Which code computes them (``coco_eval_impl``: gn_det's fast
path by default, Detectron2's ``COCOeval_opt``, or the official pycocotools ``COCOeval``) is
``TEST.COCO_EVAL.IMPL``; the evaluator records it per task in ``evaluated_by``.
"""
import itertools
import json
import math
import os

from detectron2.evaluation import COCOEvaluator
from detectron2.utils.file_io import PathManager

from .coco_eval_impl import (
    DEFAULT_IMPLEMENTATION,
    describe_implementation,
    evaluate_predictions,
    fast_impl_available,
    resolve_workers,
)

__all__ = ["SUMMARY_METRICS", "COCOAPEvaluator", "tasks_from_config", "evaluator_settings_from_config"]

# COCOeval.stats, in order, for bbox and segm (maxDets 1, 10, 100).
SUMMARY_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def tasks_from_config(cfg):
    """The COCO tasks a config's model predicts: ("bbox",) plus "segm" / "keypoints"."""
    tasks = ["bbox"]
    if cfg.MODEL.MASK_ON:
        tasks.append("segm")
    if cfg.MODEL.KEYPOINT_ON:
        tasks.append("keypoints")
    return tuple(tasks)


def evaluator_settings_from_config(cfg) -> dict:
    """``COCOAPEvaluator`` keyword arguments from ``TEST.COCO_EVAL`` (defaults where a config
    has no such node, e.g. a plain Detectron2 config)."""
    node = cfg.TEST.get("COCO_EVAL", None)
    if node is None:
        return {"implementation": DEFAULT_IMPLEMENTATION, "workers": 0}
    return {"implementation": node.IMPL, "workers": node.WORKERS}


class COCOAPEvaluator(COCOEvaluator):
    """``COCOEvaluator`` whose bbox/segm results hold all of ``SUMMARY_METRICS`` (x100, NaN where
    COCOeval gives -1) and ``AP-<class>`` per category.

    Args:
        implementation: ``"gn_det"`` (default; Detectron2's C++ core with gn_det's fast path),
            ``"detectron2"`` (``COCOeval_opt``) or ``"pycocotools"`` (the official
            ``COCOeval``). All give pycocotools' numbers; ``evaluated_by[task]`` says which ran.
        workers: processes for ``"gn_det"`` (0: half the cores, at most 8, 1 below 4 cores; 1
            for few results).
        use_fast_impl: Detectron2's flag, still accepted: True means ``"detectron2"``, False
            ``"pycocotools"``.
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, *,
                 implementation=DEFAULT_IMPLEMENTATION, workers=0, use_fast_impl=None, **kwargs):
        if use_fast_impl is not None:
            implementation = "detectron2" if use_fast_impl else "pycocotools"
        describe_implementation(implementation)  # a wrong name fails before the json is read
        self.implementation = implementation if fast_impl_available() else "pycocotools"
        self.workers = resolve_workers(workers)
        self.evaluated_by = {}
        super().__init__(dataset_name, tasks, distributed, output_dir,
                         use_fast_impl=self.implementation != "pycocotools", **kwargs)
        if self.implementation != implementation:
            self._logger.warning(f"COCO evaluation: {implementation!r} needs detectron2._C's COCOeval_opt, "
                                 "which this Detectron2 build lacks; using pycocotools")

    @property
    def num_images(self) -> int:
        """Images of the evaluated dataset (its COCO json's ``images``)."""
        return len(self._coco_api.imgs)

    def _eval_predictions(self, predictions, img_ids=None):
        """Detectron2's ``_eval_predictions`` (category ids back to the dataset's, the results
        json, one COCO evaluation per task), evaluating with ``self.implementation``."""
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        if hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
            to_dataset_id = {v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()}
            for result in coco_results:
                if result["category_id"] not in to_dataset_id:
                    raise ValueError(
                        f"a prediction has class {result['category_id']}, but dataset "
                        f"{self._metadata.name!r} has {len(to_dataset_id)} classes (0..{len(to_dataset_id) - 1})"
                    )
                result["category_id"] = to_dataset_id[result["category_id"]]
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(coco_results))
        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return
        for task in sorted(tasks):
            if task not in {"bbox", "segm", "keypoints"}:
                raise ValueError(f"unknown COCO evaluation task {task!r}")
            description = describe_implementation(self.implementation, self.workers)
            self._logger.info(f"Evaluating {task} with {description} ...")
            coco_eval = None
            if coco_results:  # pycocotools cannot evaluate an empty result list
                coco_eval = evaluate_predictions(
                    self._coco_api, coco_results, task, implementation=self.implementation,
                    workers=self.workers, max_dets_per_image=self._max_dets_per_image,
                    img_ids=img_ids, kpt_oks_sigmas=self._kpt_oks_sigmas,
                )
                self.evaluated_by[task] = getattr(coco_eval, "gn_det_description", description)
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if iou_type in ("bbox", "segm"):
            for index, metric in enumerate(SUMMARY_METRICS[6:], start=6):
                value = float("nan") if coco_eval is None else float(coco_eval.stats[index])
                results[metric] = value * 100 if value >= 0 and not math.isnan(value) else float("nan")
        return results
