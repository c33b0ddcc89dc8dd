"""COCO json validation: one test per class of bad input, each asserting the culprit is named."""

import copy
import json
import os

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from gn_det.validation import check_coco_json, read_image_size

W, H = 40, 30  # every test image is 40x30


def _image(tmp_path, name, size=(W, H), exif_orientation=None):
    path = tmp_path / "images" / name
    path.parent.mkdir(exist_ok=True)
    pixels = np.random.RandomState(0).randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if exif_orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif)
    return path


def _square(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _good_dataset(tmp_path, n_images=3):
    """n images with 2 valid annotations each (a polygon and a box), 2 categories."""
    images, annotations = [], []
    for i in range(1, n_images + 1):
        _image(tmp_path, f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
        annotations.append(
            {
                "id": 10 * i + 1,
                "image_id": i,
                "category_id": 1,
                "bbox": [2, 3, 10, 10],
                "segmentation": [_square(2, 3, 10)],
                "area": 100.0,
                "iscrowd": 0,
            }
        )
        annotations.append(
            {
                "id": 10 * i + 2,
                "image_id": i,
                "category_id": 7,
                "bbox": [20, 5, 8, 12],
                "segmentation": [[20, 5, 28, 5, 28, 17, 20, 17]],
                "area": 96.0,
                "iscrowd": 0,
            }
        )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "square"}, {"id": 7, "name": "rect"}],
    }


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _check(tmp_path, data, **kwargs):
    kwargs.setdefault("require_masks", True)
    kwargs.setdefault("for_evaluation", True)
    return check_coco_json(_write(tmp_path, data), str(tmp_path / "images"), **kwargs)


def _only_problem(result, kind):
    assert [p.kind for p in result.report.problems] == [kind], result.report.format()
    return result.report.problems[0]


def test_valid_dataset_passes(tmp_path):
    result = _check(tmp_path, _good_dataset(tmp_path))
    assert result.ok, result.report.format()
    assert result.report.problems == []


def test_not_json(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("images: [1, 2]\n")
    result = check_coco_json(str(path), str(tmp_path))
    problem = _only_problem(result, "json-syntax")
    assert str(path) in problem.where
    assert "not valid JSON" in problem.message and "line 1, column 1" in problem.message
    assert "truncated" not in problem.message


def test_truncated_json_is_called_truncated(tmp_path):
    text = json.dumps(_good_dataset(tmp_path))
    path = tmp_path / "ann.json"
    path.write_text(text[: len(text) // 2])
    problem = _only_problem(check_coco_json(str(path), str(tmp_path / "images")), "json-syntax")
    assert "truncated" in problem.message and str(path) in problem.where


def test_missing_top_level_field(tmp_path):
    data = _good_dataset(tmp_path)
    del data["categories"]
    problem = _only_problem(_check(tmp_path, data), "missing-field")
    assert "'categories'" in problem.message


def test_missing_annotation_fields_name_the_record(tmp_path):
    data = _good_dataset(tmp_path)
    del data["annotations"][2]["bbox"]
    del data["annotations"][3]["area"]
    result = _check(tmp_path, data)
    problems = result.report.problems
    assert [p.kind for p in problems] == ["missing-field", "missing-field"]
    assert "image id 2 annotation id 21" in problems[0].where and "'bbox'" in problems[0].message
    assert "annotation id 22" in problems[1].where and "'area'" in problems[1].message
    assert "COCO evaluation" in problems[1].message
    # A training-only dataset does not need area/iscrowd.
    assert len(_check(tmp_path, data, for_evaluation=False).report.problems) == 1


def test_unknown_image_and_category_ids(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["image_id"] = 99
    data["annotations"][1]["category_id"] = 3
    problems = _check(tmp_path, data).report.problems
    assert [p.kind for p in problems] == ["unknown-id", "unknown-id"]
    assert "annotation id 11" in problems[0].where and "image_id 99" in problems[0].message
    assert "annotation id 12" in problems[1].where and "category_id 3" in problems[1].message
    assert "[1, 7]" in problems[1].message  # the valid ones


def test_duplicate_ids(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][1]["id"] = 11  # same as annotations[0]
    data["images"][2]["id"] = 2  # same as images[1]
    data["categories"].append({"id": 7, "name": "again"})
    problems = _check(tmp_path, data).report.problems
    kinds = sorted((p.kind, p.where.split(": ")[-1]) for p in problems)
    assert (
        sum(
            1
            for p in problems
            if p.kind == "duplicate-id" and "image id 2" in p.where and "annotation" not in p.where
        )
        == 2
    )
    assert (
        sum(1 for p in problems if p.kind == "duplicate-id" and "annotation id 11" in p.where) == 2
    )
    assert any(p.kind == "duplicate-id" and "category id 7" in p.message for p in problems), kinds


def test_missing_image_file(tmp_path):
    data = _good_dataset(tmp_path)
    os.remove(tmp_path / "images" / "2.png")
    problem = _only_problem(_check(tmp_path, data), "image-file")
    assert (
        "image id 2" in problem.where
        and "2.png" in problem.message
        and "does not exist" in problem.message
    )


def test_unreadable_image_file(tmp_path):
    data = _good_dataset(tmp_path)
    (tmp_path / "images" / "3.png").write_bytes(b"this is not an image")
    problem = _only_problem(_check(tmp_path, data), "image-file")
    assert "image id 3" in problem.where and "unreadable" in problem.message


def test_image_size_disagrees_with_json(tmp_path):
    data = _good_dataset(tmp_path)
    _image(tmp_path, "1.png", size=(W + 2, H))
    problem = _only_problem(_check(tmp_path, data), "image-size")
    assert "image id 1" in problem.where
    assert f"is {W + 2}x{H}" in problem.message and f"json says {W}x{H}" in problem.message


def test_image_size_follows_exif_rotation_like_detectron2(tmp_path):
    from detectron2.data.detection_utils import read_image

    path = _image(tmp_path, "rotated.jpg", size=(W, H), exif_orientation=6)  # 90 degrees
    assert read_image_size(str(path)) == (H, W)
    assert read_image(str(path)).shape[:2] == (W, H)  # Detectron2 sees height W, width H


def test_box_with_non_positive_size(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][4]["bbox"] = [2, 3, 0, 10]
    problem = _only_problem(_check(tmp_path, data), "bbox")
    assert "image id 3 annotation id 31" in problem.where and "must be > 0" in problem.message


def test_box_mostly_outside_image(tmp_path):
    # Policy: a box less than half inside the image is an error (wrong image or units); one
    # that passes the border by less is a warning, clipped (tests/validation/test_policy.py).
    data = _good_dataset(tmp_path)
    data["annotations"][1]["bbox"] = [37, 5, 10, 10]  # x1 = 47 > width 40: 30% inside
    problem = _only_problem(_check(tmp_path, data), "bbox")
    assert (
        "annotation id 12" in problem.where
        and "x1=47" in problem.message
        and "40x30" in problem.message
        and "30%" in problem.message
    )


def test_empty_polygon(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["segmentation"] = []
    problem = _only_problem(_check(tmp_path, data), "polygon")
    assert "annotation id 11" in problem.where and "empty" in problem.message


def test_self_intersecting_polygon_is_an_error_under_strict(tmp_path):
    # Policy: a warning by default (test_policy.py), an error under --strict.
    data = _good_dataset(tmp_path)
    data["annotations"][3]["segmentation"] = [
        _square(2, 3, 5),
        [20, 5, 28, 17, 28, 5, 20, 17],
    ]  # bow tie
    result = _check(tmp_path, data, strict=True)
    problem = _only_problem(result, "self-intersecting")
    assert not result.ok and problem.level == "error"
    assert "annotation id 22" in problem.where
    assert "polygon 1 of 2 is self-intersecting" in problem.message
    assert "(20,5)-(28,17)" in problem.message  # one of the two crossing edges
    assert "--strict" in problem.message


def test_malformed_rle(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["segmentation"] = {
        "size": [H, W],
        "counts": [100, 50],
    }  # 150 != 1200 pixels
    data["annotations"][2]["segmentation"] = {"size": [H, W], "counts": "zz~"}  # not RLE characters
    problems = _check(tmp_path, data).report.problems
    assert [p.kind for p in problems] == ["rle", "rle"]
    assert (
        "annotation id 11" in problems[0].where
        and "sum to 150" in problems[0].message
        and "1200" in problems[0].message
    )
    assert "annotation id 21" in problems[1].where and "not an RLE character" in problems[1].message


def test_crowd_rle_is_valid_and_iscrowd_must_be_0_or_1(tmp_path):
    data = _good_dataset(tmp_path)
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[5:20, 10:30] = 1
    rle = mask_util.encode(mask)
    data["annotations"][0].update(
        iscrowd=1, segmentation={"size": rle["size"], "counts": rle["counts"].decode()}
    )
    data["annotations"][1]["iscrowd"] = 2
    problem = _only_problem(_check(tmp_path, data), "iscrowd")
    assert "annotation id 12" in problem.where and "0 or 1" in problem.message


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["bbox"] = [0, 0, -1, 5]
    data["annotations"][2]["category_id"] = 42
    data["annotations"][5]["segmentation"] = [[1, 1, 2, 2]]
    os.remove(tmp_path / "images" / "2.png")
    kinds = sorted(p.kind for p in _check(tmp_path, data).report.problems)
    assert kinds == ["bbox", "image-file", "polygon", "unknown-id"]


def test_skip_invalid_keeps_exactly_the_good_records(tmp_path):
    from detectron2.data.datasets import load_coco_json

    data = _good_dataset(tmp_path, n_images=5)
    data["annotations"][0]["bbox"] = [0, 0, 0, 5]  # bad annotation 11 (image 1 stays)
    data["annotations"][3]["segmentation"] = [[20, 5, 28, 5, 24, 5]]  # bad annotation 22: no area
    os.remove(tmp_path / "images" / "3.png")  # image 3 and its annotations 31, 32 go
    data["annotations"].append(
        {
            "id": 99,
            "image_id": 77,
            "category_id": 1,
            "bbox": [1, 1, 2, 2],
            "segmentation": [_square(1, 1, 2)],
            "area": 4.0,
            "iscrowd": 0,
        }
    )
    original = copy.deepcopy(data)

    strict = _check(tmp_path, data)
    assert not strict.ok and strict.data is None

    result = _check(tmp_path, data, skip_invalid=True, dataset_name="mixed")
    assert result.ok, result.report.format()
    assert all(p.dropped for p in result.report.problems) and len(result.report.problems) == 4
    kept_images = {img["id"] for img in result.data["images"]}
    kept_annotations = {a["id"] for a in result.data["annotations"]}
    assert kept_images == {1, 2, 4, 5}
    assert kept_annotations == {12, 21, 41, 42, 51, 52}
    assert result.dropped_image_ids == {3}
    assert result.dropped_annotation_ids == {11, 22, 31, 32, 99}
    assert result.report.dropped["mixed"] == {
        "images": 1,
        "annotations (invalid)": 3,
        "annotations (of dropped images)": 2,
        "images kept": 4,
        "annotations kept": 6,
    }
    # The kept records are the original ones, unchanged; the input is not modified.
    assert [a for a in original["annotations"] if a["id"] in kept_annotations] == result.data[
        "annotations"
    ]
    assert data == original
    # Detectron2's own loader reads the cleaned json back with exactly those records.
    cleaned = _write(tmp_path, result.data, "cleaned.json")
    dicts = load_coco_json(cleaned, str(tmp_path / "images"), dataset_name=None)
    assert sorted(d["image_id"] for d in dicts) == [1, 2, 4, 5]
    assert sum(len(d["annotations"]) for d in dicts) == 6


def test_skip_invalid_cannot_skip_file_level_problems(tmp_path):
    data = _good_dataset(tmp_path)
    data["categories"].append({"id": 1, "name": "duplicate"})
    result = _check(tmp_path, data, skip_invalid=True)
    assert not result.ok and result.data is None
    assert any(p.kind == "duplicate-id" and not p.dropped for p in result.report.problems)
