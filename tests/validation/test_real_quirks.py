"""The real-dataset quirk fixtures (real_quirks.py) reproduce what Detectron2 alone did on the
real datasets (docs/datasets.md, docs/results/2026-12-06_real_datasets_before.json): same
format, and the same outcome of Detectron2's loader and DatasetMapper(is_train=True) with the
Synthetic config (resize to 160 px, flip, bitmask masks)."""

import copy
import json
import os

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode

from gn_det import add_gn_config
from gn_det.data.formats import detect_format
from real_quirks import (
    QUIRKS,
    make_coco_box_only_empty_segmentation,
    make_coco_tiny_polygon_empty_at_train_size,
    make_roboflow_supercategory_id0,
    make_via_degenerate_region,
)

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Synthetic", "mask_rcnn_R_18_FPN_gn_scratch.yaml")


def _mapper(*opts):
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["INPUT.MIN_SIZE_TRAIN", "(160,)", "INPUT.MAX_SIZE_TRAIN", "160", *opts])
    return DatasetMapper(cfg, is_train=True)


def _instances(mapper, records):
    return [mapper(copy.deepcopy(r))["instances"] for r in records]


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_fixture_is_in_the_format_it_declares(tmp_path, name):
    case = QUIRKS[name](tmp_path)
    assert detect_format(case["json"])[0] == case["format"]
    assert os.path.isdir(case["image_dir"]) and case["source"] and case["detectron2"]


def test_box_only_cvat_export_maps_without_masks_unless_mask_on_is_off(tmp_path):
    case = make_coco_box_only_empty_segmentation(tmp_path)
    records = load_coco_json(case["json"], case["image_dir"], "real_quirks_box_only")
    assert [len(r["annotations"]) for r in records] == [2, 1]
    assert not any("segmentation" in a for r in records for a in r["annotations"])
    # MASK_ON: instances without gt_masks, which the mask head then cannot train on.
    assert not any(i.has("gt_masks") for i in _instances(_mapper(), records))
    assert [len(i) for i in _instances(_mapper(*case["opts"]), records)] == [2, 1]


def test_tiny_roboflow_polygon_is_dropped_by_the_mapper_at_the_training_size(tmp_path):
    case = make_coco_tiny_polygon_empty_at_train_size(tmp_path)
    records = load_coco_json(case["json"], case["image_dir"], "real_quirks_tiny")
    assert len(records[0]["annotations"]) == 2
    assert [len(i) for i in _instances(_mapper(), records)] == [1]
    assert [len(i) for i in _instances(_mapper("INPUT.MIN_SIZE_TRAIN", "(800,)", "INPUT.MAX_SIZE_TRAIN", "800"), records)] == [2]


def test_roboflow_super_category_becomes_an_empty_class_zero(tmp_path):
    case = make_roboflow_supercategory_id0(tmp_path)
    records = load_coco_json(case["json"], case["image_dir"], "real_quirks_roboflow")
    assert MetadataCatalog.get("real_quirks_roboflow").thing_classes[0] == "car"
    assert 0 not in {a["category_id"] for r in records for a in r["annotations"]}


def test_degenerate_via_region_is_an_instance_the_mapper_drops(tmp_path):
    # Detectron2 has no VIA loader: the balloon tutorial's conversion (box from the points).
    case = make_via_degenerate_region(tmp_path)
    with open(case["json"], encoding="utf-8") as f:
        data = json.load(f)
    records = []
    for k, v in enumerate(data.values()):
        annotations = []
        for region in v["regions"].values():
            xs = region["shape_attributes"]["all_points_x"]
            ys = region["shape_attributes"]["all_points_y"]
            annotations.append({
                "bbox": [min(xs), min(ys), max(xs), max(ys)], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                "segmentation": [[c for p in zip(xs, ys) for c in (p[0] + 0.5, p[1] + 0.5)]],
            })
        records.append({"file_name": os.path.join(case["image_dir"], v["filename"]), "image_id": k,
                        "height": 48, "width": 64, "annotations": annotations})
    assert [len(r["annotations"]) for r in records] == [4, 3]
    assert [len(i) for i in _instances(_mapper(), records)] == [3, 3]
