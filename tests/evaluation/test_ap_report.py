"""COCO AP: gn_det's evaluator against pycocotools' COCOeval, and the ap_report it writes."""
import contextlib
import copy
import io
import json
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.config import get_cfg

from gn_det import add_gn_config
from gn_det.data import register_coco_dataset
from gn_det.evaluation import (
    REPORT_FORMAT,
    SUMMARY_METRICS,
    COCOAPEvaluator,
    build_ap_report,
    evaluator_settings_from_config,
    format_ap_report_markdown,
    load_ap_report,
    write_ap_report,
)

H = W = 160
CATEGORIES = [{"id": 4, "name": "circle"}, {"id": 9, "name": "square"}, {"id": 17, "name": "triangle"}]
CONTIGUOUS = {4: 0, 9: 1, 17: 2}


def _disc(cx, cy, r):
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)


def _ann_from_mask(ann_id, image_id, category_id, mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": rle,
            "area": float(mask_util.area(rle)), "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": 0}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Ground truth (small, medium and large objects, non-contiguous ids) and detections made
    from it: shifted copies with varied scores, misclassified ones and false positives."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("ap")
    (root / "images").mkdir()
    images, gts, predictions = [], [], {}
    for image_id in range(1, 7):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": H, "width": W})
        dets = []
        for _ in range(int(rng.integers(2, 5))):
            r = float(rng.choice([4, 9, 20, 60]))  # areas below 32², between, and above 96²
            cx, cy = rng.uniform(r, W - r, size=2)
            cat = int(rng.choice(list(CONTIGUOUS)))
            gt_mask = _disc(cx, cy, r)
            gts.append(_ann_from_mask(len(gts) + 1, image_id, cat, gt_mask))
            for _copy in range(int(rng.integers(0, 3))):
                dx, dy = rng.normal(0, r * 0.25, size=2)
                mask = _disc(cx + dx, cy + dy, r * rng.uniform(0.8, 1.2))
                label = cat if rng.random() > 0.2 else int(rng.choice(list(CONTIGUOUS)))
                dets.append((mask, label, float(rng.uniform(0.05, 1.0))))
        for _fp in range(int(rng.integers(0, 3))):
            dets.append((_disc(*rng.uniform(10, W - 10, size=2), rng.uniform(3, 30)),
                         int(rng.choice(list(CONTIGUOUS))), float(rng.uniform(0.05, 0.6))))
        predictions[image_id] = [d for d in dets if d[0].any()]
    json_file = root / "gt.json"
    json_file.write_text(json.dumps({"images": images, "annotations": gts, "categories": CATEGORIES}))
    register_coco_dataset("test_ap_scene", str(json_file), str(root / "images"))
    return str(json_file), predictions


def _instances(dets):
    masks = torch.as_tensor(np.stack([d[0] for d in dets])) if dets else torch.zeros(0, H, W, dtype=torch.bool)
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
    inst = Instances((H, W))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor([d[2] for d in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([CONTIGUOUS[d[1]] for d in dets], dtype=torch.int64)
    inst.pred_masks = masks
    return inst


def _evaluator(predictions, **kwargs):
    evaluator = COCOAPEvaluator("test_ap_scene", tasks=("bbox", "segm"), distributed=False, **kwargs)
    evaluator.reset()
    for image_id, dets in predictions.items():
        evaluator.process([{"image_id": image_id}], [{"instances": _instances(dets)}])
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.results = evaluator.evaluate()
    return evaluator


def _gn_det_results(predictions):
    return _evaluator(predictions).results


def _pycocotools(json_file, predictions, iou_type, cat_ids=None):
    """COCOeval on the same detections, written by this test in COCO result format."""
    results = []
    for image_id, dets in predictions.items():
        for mask, label, score in dets:
            ys, xs = np.nonzero(mask)
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            result = {"image_id": image_id, "category_id": label, "score": score}
            if iou_type == "segm":
                # COCO's segm result format has no bbox; with one, loadRes would size the
                # detection by its box instead of its mask for APs/APm/APl.
                result["segmentation"] = rle
            else:
                result["bbox"] = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                                  float(ys.max() + 1 - ys.min())]
            results.append(result)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        coco_eval = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval.stats


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_all_twelve_numbers_equal_pycocotools(scene, iou_type):
    json_file, predictions = scene
    ours = _gn_det_results(predictions)[iou_type]
    stats = _pycocotools(json_file, predictions, iou_type)
    assert (stats[:6] >= 0).all(), "the scene must exercise small, medium and large objects"
    for index, metric in enumerate(SUMMARY_METRICS):
        expected = stats[index] * 100 if stats[index] >= 0 else float("nan")
        assert ours[metric] == pytest.approx(expected, abs=1e-9, nan_ok=True), metric


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_per_category_ap_equals_pycocotools_restricted_to_that_category(scene, iou_type):
    json_file, predictions = scene
    ours = _gn_det_results(predictions)[iou_type]
    for category in CATEGORIES:
        stats = _pycocotools(json_file, predictions, iou_type, cat_ids=[category["id"]])
        assert ours["AP-" + category["name"]] == pytest.approx(stats[0] * 100, abs=1e-9), category


@pytest.mark.parametrize("setting,expected", [("gn_det", "gn_det FastCOCOeval"), ("detectron2", "Detectron2 COCOeval_opt"),
                                              ("pycocotools", "pycocotools")])
def test_the_config_key_chooses_the_implementation_and_the_evaluator_names_it(scene, setting, expected):
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_list(["TEST.COCO_EVAL.IMPL", setting])
    evaluator = _evaluator(scene[1], **evaluator_settings_from_config(cfg))
    assert set(evaluator.evaluated_by) == {"bbox", "segm"}
    assert all(text.startswith(expected) for text in evaluator.evaluated_by.values()), evaluator.evaluated_by
    reference = _evaluator(scene[1], implementation="pycocotools").results
    for task in ("bbox", "segm"):
        for metric in SUMMARY_METRICS:
            assert evaluator.results[task][metric] == pytest.approx(reference[task][metric], abs=1e-9, nan_ok=True)


def test_detectron2s_use_fast_impl_flag_still_means_what_it_meant(scene):
    assert COCOAPEvaluator("test_ap_scene", use_fast_impl=False).implementation == "pycocotools"
    assert COCOAPEvaluator("test_ap_scene", use_fast_impl=True).implementation == "detectron2"


def test_report_says_what_computed_each_task():
    by = {"val": {"bbox": "gn_det FastCOCOeval (x)", "segm": "pycocotools 2.0 COCOeval (official)"}}
    report = build_ap_report(_results(), class_names={"val": ["cat", "dog"]}, num_images={"val": 10},
                             run={}, evaluated_by=by)
    assert report["datasets"]["val"]["bbox"]["evaluated_by"] == "gn_det FastCOCOeval (x)"
    text = format_ap_report_markdown(report)
    assert "Computed by gn_det FastCOCOeval (x); pycocotools 2.0 COCOeval (official)." in text
    assert "Computed by" not in format_ap_report_markdown(_report())  # older reports: no line


def _results():
    metrics = {m: float(i) for i, m in enumerate(SUMMARY_METRICS)}
    metrics["APl"] = float("nan")
    return {"val": {"bbox": dict(metrics, **{"AP-cat": 50.0, "AP-dog": 25.0}),
                    "segm": dict(metrics, **{"AP-cat": 40.0, "AP-dog": float("nan")})}}


def _report():
    return build_ap_report(_results(), class_names={"val": ["cat", "dog"]}, num_images={"val": 10},
                           run={"norm": {"backbone": "GN"}, "ims_per_gpu": 2.0}, weights="w.pth", iteration=99)


def test_report_holds_every_number_per_task_and_category_with_null_for_nan():
    report = _report()
    assert report["format"] == REPORT_FORMAT and report["iteration"] == 99
    entry = report["datasets"]["val"]
    for task in ("bbox", "segm"):
        assert list(entry[task])[:12] == list(SUMMARY_METRICS)
        assert entry[task]["APl"] is None
        assert entry[task]["AR100"] == float(SUMMARY_METRICS.index("AR100"))
    assert entry["bbox"]["per_category"] == {"cat": 50.0, "dog": 25.0}
    assert entry["segm"]["per_category"] == {"cat": 40.0, "dog": None}
    json.dumps(report, allow_nan=False)  # strict json: no NaN anywhere


def test_markdown_table_rows_and_columns():
    text = format_ap_report_markdown(_report())
    assert "| metric | bbox | segm |" in text
    assert "| AR10 | 7.0 | 7.0 |" in text
    assert "| APl | n/a | n/a |" in text
    assert "| dog | 25.0 | n/a |" in text
    assert "val: 10 images, w.pth (iteration 99)" in text


def test_written_report_round_trips_and_wrong_files_are_refused(tmp_path):
    paths = write_ap_report(_report(), str(tmp_path))
    assert load_ap_report(str(tmp_path)) == json.loads(json.dumps(_report()))
    assert open(paths["markdown"]).read().startswith("### val")
    with pytest.raises(FileNotFoundError, match="no ap_report.json"):
        load_ap_report(str(tmp_path / "missing"))
    (tmp_path / "other.json").write_text(json.dumps({"bbox": {}}))
    with pytest.raises(ValueError, match="not a gn_det AP report"):
        load_ap_report(str(tmp_path / "other.json"))


def test_no_detections_gives_nan_not_a_crash(scene):
    results = _gn_det_results({image_id: [] for image_id in scene[1]})
    assert set(results) == {"bbox", "segm"}
    assert all(math.isnan(results[t][m]) for t in ("bbox", "segm") for m in SUMMARY_METRICS)
