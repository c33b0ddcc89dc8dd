"""Detectron2's ``COCOeval_opt`` with the Python half of its ``evaluate`` made cheap.

Detectron2's ``COCOeval_opt`` runs the per-image matching and ``accumulate`` in C++, but still
calls pycocotools' ``computeIoU`` in Python for every (image, category) pair: 400,000 calls on
val2017 (5,000 images x 80 categories), nearly all of them for pairs without a ground-truth
object or without a detection, whose IoU matrix is empty (``[]``) by definition. Profiled on a
val2017-sized bbox evaluation that loop was about half of the evaluation's time, and
wrapping every pair's (mostly empty) instance lists for C++ another sixth.

``FastCOCOeval`` computes the IoU matrix, with pycocotools' own ``computeIoU`` / ``computeOks``,
only for pairs that have both, gives every other pair the same ``[]`` that ``computeIoU`` would
return, and hands C++ one shared empty list for empty pairs. ``_prepare``, the IoU values, the
C++ matching (``COCOevalEvaluateImages``) and ``accumulate`` (``COCOevalAccumulate``) are
Detectron2's and pycocotools' own, so the results are the same numbers, bit for bit, as
``COCOeval_opt``'s (tests/evaluation compare them with pycocotools' ``COCOeval`` too).

Two more pycocotools steps cost seconds at that size for no reason: ``_prepare`` selects the
annotations by testing ``category_id in catIds`` against a list of numpy integers (done here
with a set), and ``loadRes`` of mask results calls pycocotools twice per result for its area
and box (``load_results`` makes one batched call each).
"""
import contextlib
import copy
import io
import logging
import time
from collections import defaultdict
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from detectron2.evaluation.fast_eval_api import COCOeval_opt
from pycocotools.coco import COCO

__all__ = ["FastCOCOeval", "load_results"]

logger = logging.getLogger(__name__)


def _instances_for_cpp(anns, is_detection: bool):
    """One (image, category) pair's annotations as Detectron2's C++ ``InstanceAnnotation``s."""
    from detectron2 import _C

    return [
        _C.InstanceAnnotation(
            int(a["id"]),
            a["score"] if is_detection else a.get("score", 0.0),
            a["area"],
            bool(a.get("iscrowd", 0)),
            bool(a.get("ignore", 0)),
        )
        for a in anns
    ]


def _is_compressed_rle(segmentation) -> bool:
    return isinstance(segmentation, dict) and not isinstance(segmentation.get("counts"), list)


def _selected(coco, img_ids, cat_ids):
    """What pycocotools' ``loadAnns(getAnnIds(imgIds=img_ids, catIds=cat_ids))`` returns (the
    same objects, in the same order), with the category test done on a set: pycocotools tests
    ``category_id in catIds`` on a list of numpy integers, ~80 comparisons per annotation."""
    index, anns = coco.imgToAnns, coco.anns
    return [anns[a["id"]] for img in img_ids if img in index for a in index[img] if a["category_id"] in cat_ids]


def load_results(coco_gt: COCO, results: List[Dict], iou_type: str) -> COCO:
    """``coco_gt.loadRes(results)``, with the mask areas and boxes of segm results computed in
    two batched pycocotools calls instead of two calls per result (4 of 5 s of a val2017-sized
    mask evaluation's loadRes). Other result kinds go to ``loadRes`` itself."""
    if iou_type != "segm" or not results or "bbox" in results[0] or "segmentation" not in results[0]:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results)
    unknown = {r["image_id"] for r in results} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"{len(unknown)} result image ids are not in the ground truth, e.g. {sorted(unknown)[:5]}")
    rles = [r["segmentation"] for r in results]
    boxes = mask_util.toBbox(rles)
    # pycocotools' area() of a list sizes an array with np.uint8 (it fails above 255 masks
    # under numpy 2), so it is called per 255 masks: ~2,000 calls instead of 500,000.
    areas = np.concatenate([mask_util.area(rles[i:i + 255]) for i in range(0, len(rles), 255)])
    for i, r in enumerate(results):  # the fields loadRes sets, with its values and types
        r["area"] = areas[i]
        if "bbox" not in r:
            r["bbox"] = boxes[i]
        r["id"] = i + 1
        r["iscrowd"] = 0
    res = COCO()
    res.dataset = {"info": copy.deepcopy(coco_gt.dataset.get("info", {})), "images": list(coco_gt.dataset["images"]),
                   "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": results}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


class FastCOCOeval(COCOeval_opt):
    """``COCOeval_opt`` whose ``evaluate`` skips the (image, category) pairs that cannot match.

    Same results as ``COCOeval_opt`` (hence as pycocotools' ``COCOeval``); ``accumulate`` and
    ``summarize`` are inherited. Without categories (``params.useCats = 0``) every pair has
    detections and ground truth of all classes, so it is ``COCOeval_opt.evaluate`` unchanged.
    """

    def _prepare(self):
        """pycocotools' ``_prepare`` (same ``_gts`` / ``_dts``, same flags), selecting the
        annotations with a set of category ids."""
        p = self.params
        if not p.useCats:
            return super()._prepare()
        cat_ids = {int(c) for c in p.catIds}
        gts = _selected(self.cocoGt, p.imgIds, cat_ids)
        dts = _selected(self.cocoDt, p.imgIds, cat_ids)
        if p.iouType == "segm":  # polygons and uncompressed RLE to RLE, as pycocotools does
            for anns, coco in ((gts, self.cocoGt), (dts, self.cocoDt)):
                for ann in anns:
                    if not _is_compressed_rle(ann["segmentation"]):  # annToRLE returns those as they are
                        ann["segmentation"] = coco.annToRLE(ann)
        for gt in gts:
            gt["ignore"] = "iscrowd" in gt and gt["iscrowd"]
            if p.iouType == "keypoints":
                gt["ignore"] = (gt["num_keypoints"] == 0) or gt["ignore"]
        self._gts, self._dts = defaultdict(list), defaultdict(list)
        for gt in gts:
            self._gts[gt["image_id"], gt["category_id"]].append(gt)
        for dt in dts:
            self._dts[dt["image_id"], dt["category_id"]].append(dt)
        self.evalImgs = defaultdict(list)
        self.eval = {}

    def evaluate(self):
        p = self.params
        if not p.useCats:
            return super().evaluate()
        from detectron2 import _C

        start = time.perf_counter()
        if p.useSegm is not None:  # pycocotools' backward compatibility, as COCOeval_opt has it
            p.iouType = "segm" if p.useSegm == 1 else "bbox"
        p.imgIds = list(np.unique(p.imgIds))
        p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self._prepare()

        compute = self.computeOks if p.iouType == "keypoints" else self.computeIoU
        gts, dts = self._gts, self._dts
        # Only pairs with both ground truth and detections have an IoU matrix; for the rest
        # computeIoU / computeOks return [] (nothing to match), which is what they get here.
        self.ious = {key: compute(*key) for key in gts.keys() & dts.keys() if gts[key] and dts[key]}
        # Per category, the images that hold any of its ground truth or detections, in the
        # order of p.imgIds (the order in which accumulation breaks score ties).
        images_of = defaultdict(set)
        for img, cat in list(gts.keys()) + list(dts.keys()):
            images_of[cat].add(img)
        order = {img: i for i, img in enumerate(p.imgIds)}
        self._evalImgs_cpp = []
        for k, cat in enumerate(p.catIds):
            images = sorted((i for i in images_of.get(cat, ()) if i in order), key=order.__getitem__)
            if not images:
                continue  # nothing to match: its precision and recall stay -1, as in COCOeval
            pairs = [(img, cat) for img in images]
            evaluations = _C.COCOevalEvaluateImages(
                p.areaRng, p.maxDets[-1], p.iouThrs,
                [[self.ious.get(key, [])] for key in pairs],
                [[_instances_for_cpp(gts.get(key, ()), False)] for key in pairs],
                [[_instances_for_cpp(dts.get(key, ()), True)] for key in pairs],
            )
            self._evalImgs_cpp.append((k, images, evaluations))
        self._evalImgs = None
        self._paramsEval = copy.deepcopy(self.params)
        logger.info(f"FastCOCOeval.evaluate() ({p.iouType}) finished in {time.perf_counter() - start:.2f} s.")

    def accumulate(self):
        """Detectron2's C++ accumulation, one category at a time over the images evaluated for
        it; the arrays are COCOeval's ``eval`` (precision T x R x K x A x M, recall T x K x A x M,
        scores), -1 where a category has nothing to evaluate."""
        if not self.params.useCats:
            return super().accumulate()
        from detectron2 import _C

        assert hasattr(self, "_evalImgs_cpp"), "evaluate() must be called before accumulate()."
        p = self._paramsEval
        T, R, K, A, M = len(p.iouThrs), len(p.recThrs), len(p.catIds), len(p.areaRng), len(p.maxDets)
        precision, scores = np.full((T, R, K, A, M), -1.0), np.full((T, R, K, A, M), -1.0)
        recall = np.full((T, K, A, M), -1.0)
        for k, images, evaluations in self._evalImgs_cpp:
            one = _OneCategory(p, images)
            part = _C.COCOevalAccumulate(one, evaluations)
            precision[:, :, k] = np.asarray(part["precision"]).reshape(T, R, A, M)
            scores[:, :, k] = np.asarray(part["scores"]).reshape(T, R, A, M)
            recall[:, k] = np.asarray(part["recall"]).reshape(T, A, M)
        self.eval = {"params": p, "counts": [T, R, K, A, M], "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "precision": precision, "recall": recall, "scores": scores}


class _OneCategory:
    """The parameters ``COCOevalAccumulate`` reads, for one category and its images."""

    def __init__(self, params, images):
        self.recThrs, self.maxDets, self.iouThrs = params.recThrs, params.maxDets, params.iouThrs
        self.areaRng = params.areaRng
        self.useCats = 1
        self.catIds = [None]
        self.imgIds = images
