"""The COCO evaluation implementations against pycocotools' official COCOeval: all 12 summary
numbers and every category's AP, boxes and masks, on a generated COCO-like split (crowd RLE,
multi-part polygons, all three object sizes, 80 COCO categories) with detections that match,
duplicate and miss, plus the corner cases pycocotools has rules for (score ties, a category
with ground truth but no detection and the reverse, results of a category the dataset lacks).
"""
import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gn_det.benchmark.coco_scale_data import VAL2017, write_split
from gn_det.benchmark.coco_scale_detections import make_detections
from gn_det.evaluation import coco_eval_impl
from gn_det.evaluation.coco_eval_impl import evaluate_predictions

TOLERANCE = 1e-9  # AP as a fraction; the issue asks for 0.01 AP points (1e-4)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """40 images, ~300 objects (5 % crowd), 30 detections per image, and the corner cases."""
    spec = VAL2017.scaled(40 / VAL2017.num_images)
    spec = type(spec)(**{**spec.__dict__, "crowd_fraction": 0.05, "seed": 7})
    info = write_split(str(tmp_path_factory.mktemp("coco")), spec, log=lambda *_: None)
    with open(info["json_file"]) as f:
        gt = json.load(f)
    results = make_detections(gt, seed=3, per_image=30)
    used = {a["category_id"] for a in gt["annotations"]}
    unused = [c["id"] for c in gt["categories"] if c["id"] not in used]
    # A category the dataset has but no object of: its detections are all false positives.
    results += [dict(r, category_id=unused[0]) for r in results[:5]]
    # A category with objects but no detection at all.
    missed = sorted(used)[-1]
    results = [r for r in results if r["category_id"] != missed]
    # Score ties, broken by the order of the results in both implementations.
    for r in results[10:20]:
        r["score"] = 0.5
    # A category id the dataset does not have: COCOeval ignores such results.
    results.append(dict(results[0], category_id=999))
    assert any(a["iscrowd"] for a in gt["annotations"])
    return info["json_file"], results


@pytest.fixture(scope="module")
def official(split):
    """pycocotools' COCOeval on the split, per IoU type (computed once)."""
    return {iou_type: _official(*split, iou_type) for iou_type in ("bbox", "segm")}


def _official(json_file, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        mine = copy.deepcopy(results)
        if iou_type == "segm":
            for r in mine:
                r.pop("bbox")
        coco_eval = COCOeval(gt, gt.loadRes(mine), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _ours(json_file, results, iou_type, implementation, workers=1):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        return evaluate_predictions(gt, copy.deepcopy(results), iou_type, implementation=implementation,
                                    workers=workers)


def _per_category_ap(coco_eval):
    """Detectron2's per-category AP: the mean precision over IoUs and recalls, all areas, 100 dets."""
    precision = coco_eval.eval["precision"]
    aps = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        aps.append(float(np.mean(p)) if p.size else float("nan"))
    return np.array(aps)


CASES = [("gn_det", 1), ("gn_det", 2), ("detectron2", 1), ("pycocotools", 1)]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("implementation,workers", CASES)
def test_twelve_numbers_and_per_category_ap_equal_pycocotools(split, official, iou_type, implementation, workers,
                                                              monkeypatch):
    monkeypatch.setattr(coco_eval_impl, "_MIN_RESULTS_PER_WORKER", 1)  # split even this small set
    json_file, results = split
    official = official[iou_type]
    ours = _ours(json_file, results, iou_type, implementation, workers)
    assert official.stats.shape == ours.stats.shape == (12,)
    assert (official.stats[:6] > 0).all() and (official.stats[:6] < 1).all(), official.stats
    np.testing.assert_allclose(ours.stats, official.stats, rtol=0, atol=TOLERANCE)
    expected, got = _per_category_ap(official), _per_category_ap(ours)
    assert np.isnan(expected).sum() >= 1 and (expected == 0).sum() >= 1  # unused and missed categories
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours.eval["recall"], official.eval["recall"], rtol=0, atol=TOLERANCE)
    assert ours.gn_det_description.startswith(
        {"gn_det": "gn_det", "detectron2": "Detectron2", "pycocotools": "pycocotools"}[implementation])
    assert ("2 processes" in ours.gn_det_description) == (workers == 2)


def test_few_results_are_evaluated_in_one_process(split):
    json_file, results = split
    ours = _ours(json_file, results, "bbox", "gn_det", workers=4)
    assert "processes" not in ours.gn_det_description  # ~1,000 results: a fork would cost more


def test_unknown_implementation_is_refused_by_name(split):
    json_file, results = split
    with pytest.raises(ValueError, match="'fastest'; valid: gn_det, detectron2, pycocotools"):
        _ours(json_file, results, "bbox", "fastest")
