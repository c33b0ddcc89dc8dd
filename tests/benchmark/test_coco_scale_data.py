"""The COCO-sized workload generator at a tiny scale: exact counts, COCO's shape (categories,
polygons, crowd RLE, sizes), image files with the stated sizes, determinism, detections."""
import json
import os
from collections import Counter
from dataclasses import replace

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data.datasets import load_coco_json
from PIL import Image

from gn_det.benchmark.coco_scale_data import (
    TRAIN2017,
    VAL2017,
    CocoSizeSpec,
    coco_categories,
    scaled_spec,
    split_paths,
    write_split,
)
from gn_det.benchmark.coco_scale_detections import make_detections

SPEC = CocoSizeSpec("val2017", num_images=120, num_annotations=900, seed=5, crowd_fraction=0.05,
                    empty_image_fraction=0.05)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("coco_scale"))
    info = write_split(root, SPEC, log=lambda *_: None)
    with open(info["json_file"]) as f:
        return root, info, json.load(f)


def test_counts_are_exactly_the_specs(written):
    _, info, coco = written
    assert len(coco["images"]) == info["images"] == 120
    assert len(coco["annotations"]) == info["annotations"] == 900
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 901))
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert len(coco["images"]) - len(per_image) == 6  # 5 % of the images have no annotation
    assert len({im["id"] for im in coco["images"]}) == 120
    assert 20 <= info["crowd"] <= 80 and info["crowd"] == sum(a["iscrowd"] for a in coco["annotations"])


def test_categories_are_cocos_and_person_is_the_most_frequent(written):
    _, _, coco = written
    assert coco["categories"] == coco_categories()
    assert len(coco["categories"]) == 80 and coco["categories"][-1]["id"] == 90
    counts = Counter(a["category_id"] for a in coco["annotations"])
    assert counts.most_common(1)[0][0] == 1  # person


def test_polygons_are_inside_the_image_and_their_box(written):
    _, _, coco = written
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    parts = []
    for ann in coco["annotations"]:
        if ann["iscrowd"]:
            continue
        w, h = sizes[ann["image_id"]]
        x, y, bw, bh = ann["bbox"]
        parts.append(len(ann["segmentation"]))
        for poly in ann["segmentation"]:
            p = np.asarray(poly).reshape(-1, 2)
            assert len(p) >= 4
            assert (p >= 0).all() and (p[:, 0] <= w).all() and (p[:, 1] <= h).all()
            assert (p[:, 0] >= x - 0.01).all() and (p[:, 0] <= x + bw + 0.01).all()
            assert (p[:, 1] >= y - 0.01).all() and (p[:, 1] <= y + bh + 0.01).all()
        assert ann["area"] > 0
    assert max(parts) >= 2  # some objects in several parts


def test_crowd_regions_are_uncompressed_rle_of_the_image_size(written):
    _, _, coco = written
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    for ann in (a for a in coco["annotations"] if a["iscrowd"]):
        w, h = sizes[ann["image_id"]]
        rle = ann["segmentation"]
        assert rle["size"] == [h, w] and isinstance(rle["counts"], list) and sum(rle["counts"]) == h * w
        compressed = mask_util.frPyObjects(rle, h, w)
        assert float(mask_util.area(compressed)) == ann["area"] > 0


def test_image_files_have_the_stated_sizes_and_share_inodes(written):
    root, _, coco = written
    _, image_dir = split_paths(root, "val2017")
    for image in coco["images"]:
        path = os.path.join(image_dir, image["file_name"])
        with Image.open(path) as im:
            assert im.size == (image["width"], image["height"])
    links = [os.stat(os.path.join(image_dir, im["file_name"])).st_nlink for im in coco["images"]]
    assert max(links) > 10  # one file per size, hard-linked


def test_detectron2_loads_it(written):
    root, _, coco = written
    json_file, image_dir = split_paths(root, "val2017")
    records = load_coco_json(json_file, image_dir)
    assert len(records) == 120
    assert sum(len(r["annotations"]) for r in records) == 900


def test_same_seed_same_bytes_and_a_finished_split_is_not_rewritten(written, tmp_path):
    root, info, _ = written
    again = write_split(str(tmp_path), SPEC, log=lambda *_: None)
    with open(info["json_file"], "rb") as a, open(again["json_file"], "rb") as b:
        assert a.read() == b.read()
    before = os.path.getmtime(again["json_file"])
    assert write_split(str(tmp_path), SPEC, log=lambda *_: None)["json_file"] == again["json_file"]
    assert os.path.getmtime(again["json_file"]) == before
    other = write_split(str(tmp_path / "other"), replace(SPEC, seed=6), log=lambda *_: None)
    with open(other["json_file"], "rb") as b:
        assert b.read() != open(info["json_file"], "rb").read()


def test_detections_per_image_with_boxes_and_masks(written):
    _, _, coco = written
    results = make_detections(coco, seed=1, per_image=10)
    assert len(results) == 10 * len(coco["images"])
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    categories = {c["id"] for c in coco["categories"]}
    for r in results[:300]:
        w, h = sizes[r["image_id"]]
        assert r["category_id"] in categories and 0 < r["score"] < 1
        assert r["segmentation"]["size"] == [h, w] and isinstance(r["segmentation"]["counts"], str)
        x, y, bw, bh = r["bbox"]
        assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w + 0.01 and y + bh <= h + 0.01
    assert make_detections(coco, seed=1, per_image=10)[:50] == results[:50]


def test_scaled_specs_keep_the_proportions_under_their_own_root():
    spec, root = scaled_spec(TRAIN2017, "/data", 0.001)
    assert (spec.num_images, spec.num_annotations, spec.split) == (118, 860, "train2017")
    assert root == "/data/scale_0.001"
    assert scaled_spec(VAL2017, "/data", 1.0) == (VAL2017, "/data")
    with pytest.raises(ValueError, match="cannot cover"):
        CocoSizeSpec("x", num_images=100, num_annotations=10, seed=0).validate()
