"""Detectron2's COCOEvaluator, keeping all 12 COCOeval summary numbers for boxes and masks.

Detectron2 keeps only the six AP numbers of ``COCOeval.stats``; the six AR numbers (AR1, AR10,
AR100, ARs, ARm, ARl) are added here, read from the same ``COCOeval`` object. Per-category AP is
Detectron2's (``AP-<class name>``).
"""
import math

from detectron2.evaluation import COCOEvaluator

__all__ = ["SUMMARY_METRICS", "COCOAPEvaluator", "tasks_from_config"]

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


class COCOAPEvaluator(COCOEvaluator):
    """``COCOEvaluator`` whose bbox/segm results hold all of ``SUMMARY_METRICS`` (x100, NaN where
    COCOeval gives -1) and ``AP-<class>`` per category.

    It evaluates with the official pycocotools ``COCOeval`` unless ``use_fast_impl=True``, so
    its numbers are pycocotools' numbers.
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, *, use_fast_impl=False, **kwargs):
        super().__init__(
            dataset_name, tasks, distributed, output_dir, use_fast_impl=use_fast_impl, **kwargs
        )

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if iou_type in ("bbox", "segm"):
            for index, metric in enumerate(SUMMARY_METRICS[6:], start=6):
                value = float("nan") if coco_eval is None else float(coco_eval.stats[index])
                results[metric] = value * 100 if value >= 0 and not math.isnan(value) else float("nan")
        return results
