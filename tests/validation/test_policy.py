"""The validation policy (gn_det/validation/policy.py): real-data quirks are warnings (some
repaired), broken data stays an error, --strict makes warnings errors.

The fixtures reproduce quirks of the real datasets listed in docs/datasets.md: polygons a few
pixels past the border, self-crossing outlines, boolean iscrowd, tool keys (Roboflow's image
'license'/'date_captured' are COCO's own; 'extra' is not), an unused and a duplicate-named
category (Roboflow's super-category), multi-ring polygons, images without annotations.
"""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from gn_det.validation import MIN_INSIDE_FRACTION, WARNINGS, check_coco_json
from gn_det.validation.report import ValidationReport

W, H = 40, 30


def _dataset(tmp_path, annotations, images=1, categories=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    records = []
    for i in range(1, images + 1):
        Image.new("RGB", (W, H)).save(tmp_path / "images" / f"{i}.png")
        records.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
    for k, ann in enumerate(annotations, start=1):
        ann.setdefault("id", k)
        ann.setdefault("image_id", 1)
        ann.setdefault("category_id", 1)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", 10.0)
    data = {
        "images": records,
        "annotations": annotations,
        "categories": categories or [{"id": 1, "name": "a"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path), str(tmp_path / "images")


def _check(path, root, **kwargs):
    return check_coco_json(path, root, require_masks=True, for_evaluation=True, **kwargs)


def _kinds(result, level):
    return [p.kind for p in result.report.problems if p.level == level]


def _rasterize(polygons):
    return mask_util.decode(mask_util.merge(mask_util.frPyObjects(polygons, H, W)))


def test_polygon_a_little_past_the_border_is_a_warning_and_clipped_as_rasterization_does(tmp_path):
    polygon = [30, 5, 43, 6, 42, 20, 31, 22]  # 3 px past x = 40
    path, root = _dataset(tmp_path, [{"bbox": [30, 5, 10, 17], "segmentation": [polygon]}])
    result = _check(path, root)
    assert result.ok and _kinds(result, "warning") == ["border"]
    problem = result.report.warnings[0]
    assert "polygon 0 of 1" in problem.message and "annotation id 1" in problem.where
    assert problem.repair == "polygon clipped to the image"
    clipped = result.data["annotations"][0]["segmentation"][0]
    assert max(clipped[0::2]) == W
    # The same mask, up to pycocotools snapping the new border vertices to its 1/5 px grid.
    original, repaired = _rasterize([polygon]), _rasterize([clipped])
    assert original.sum() > 150 and np.sum(original != repaired) <= 2


def test_polygon_mostly_outside_is_an_error(tmp_path):
    polygon = [35, 5, 80, 5, 80, 20, 35, 20]  # 5 of 45 px inside
    path, root = _dataset(tmp_path, [{"bbox": [35, 5, 5, 15], "segmentation": [polygon]}])
    result = _check(path, root)
    assert not result.ok and _kinds(result, "error") == ["polygon"]
    message = result.report.errors[0].message
    assert "only 11% of its area lies inside" in message and f"{MIN_INSIDE_FRACTION:.0%}" in message


def test_box_a_little_past_the_border_is_clipped(tmp_path):
    path, root = _dataset(
        tmp_path, [{"bbox": [-3, 2, 10, 10], "segmentation": [[0, 2, 7, 2, 7, 12]]}]
    )
    result = _check(path, root)
    assert result.ok and _kinds(result, "warning") == ["border"]
    assert result.data["annotations"][0]["bbox"] == [0.0, 2.0, 7.0, 10.0]
    assert result.repaired_annotation_ids == {1}


def test_self_intersecting_polygon_is_a_warning_and_kept(tmp_path):
    bow_tie = [20, 5, 28, 17, 28, 5, 20, 17]
    path, root = _dataset(tmp_path, [{"bbox": [20, 5, 8, 12], "segmentation": [bow_tie]}])
    result = _check(path, root)
    assert result.ok and _kinds(result, "warning") == ["self-intersecting"]
    assert "(20,5)-(28,17)" in result.report.warnings[0].message
    assert result.data["annotations"][0]["segmentation"] == [bow_tie]
    assert result.repaired_annotation_ids == set()


def test_boolean_iscrowd_is_a_warning_repaired_to_an_int(tmp_path):
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    path, root = _dataset(
        tmp_path,
        [
            {"bbox": [2, 2, 10, 10], "segmentation": square, "iscrowd": False},
            {"bbox": [2, 2, 10, 10], "segmentation": square, "iscrowd": True},
        ],
    )
    result = _check(path, root)
    assert result.ok and _kinds(result, "warning") == ["iscrowd-bool", "iscrowd-bool"]
    crowd = [a["iscrowd"] for a in result.data["annotations"]]
    assert crowd == [0, 1] and all(type(v) is int for v in crowd)


def test_extra_keys_unused_and_duplicate_named_categories_and_empty_images_are_warnings(tmp_path):
    categories = [
        {"id": 0, "name": "facade", "supercategory": "none"},
        {"id": 1, "name": "window"},
        {"id": 3, "name": "facade", "supercategory": "facade"},
    ]
    path, root = _dataset(
        tmp_path,
        [
            {
                "bbox": [2, 2, 10, 10],
                "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]],
                "extra": {"name": "w"},
            },
            {
                "bbox": [2, 2, 10, 10],
                "segmentation": [[2, 2, 12, 2, 12, 12]],
                "category_id": 3,
                "extra": {},
            },
        ],
        images=2,
        categories=categories,
    )
    result = _check(path, root)
    assert result.ok, result.report.format()
    assert sorted(_kinds(result, "warning")) == [
        "duplicate-category-name",
        "extra-keys",
        "no-annotations",
        "unused-category",
    ]
    by_kind = {p.kind: p for p in result.report.warnings}
    assert (
        "'extra'" in by_kind["extra-keys"].message
        and "2 of 2 annotations" in by_kind["extra-keys"].message
    )
    assert "class 0 ('facade')" in by_kind["unused-category"].message
    assert "[0, 3]" in by_kind["duplicate-category-name"].message
    assert "image id 2" in by_kind["no-annotations"].where


def test_multi_ring_polygon_with_one_ring_past_the_border(tmp_path):
    rings = [[2, 2, 12, 2, 12, 12, 2, 12], [30, 20, 42, 20, 42, 28, 30, 28]]
    path, root = _dataset(tmp_path, [{"bbox": [2, 2, 38, 26], "segmentation": rings}])
    result = _check(path, root)
    assert result.ok and _kinds(result, "warning") == ["border"]
    assert "polygon 1 of 2" in result.report.warnings[0].message
    repaired = result.data["annotations"][0]["segmentation"]
    assert repaired[0] == rings[0] and max(repaired[1][0::2]) == W


QUIRKS = {
    "border": {"bbox": [30, 5, 10, 10], "segmentation": [[30, 5, 43, 5, 43, 15, 30, 15]]},
    "self-intersecting": {"bbox": [20, 5, 8, 12], "segmentation": [[20, 5, 28, 17, 28, 5, 20, 17]]},
    "iscrowd-bool": {
        "bbox": [2, 2, 10, 10],
        "segmentation": [[2, 2, 12, 2, 12, 12]],
        "iscrowd": False,
    },
    "extra-keys": {"bbox": [2, 2, 10, 10], "segmentation": [[2, 2, 12, 2, 12, 12]], "tool": 1},
}


@pytest.mark.parametrize("kind", sorted(QUIRKS))
def test_strict_makes_the_warning_an_error(tmp_path, kind):
    path, root = _dataset(tmp_path, [dict(QUIRKS[kind])])
    assert _check(path, root).ok
    result = _check(path, root, strict=True)
    assert not result.ok and result.data is None
    assert [p.kind for p in result.report.errors] == [kind]
    assert "error under --strict" in result.report.errors[0].message


def test_strict_with_skip_invalid_drops_the_record(tmp_path):
    clean = {"bbox": [2, 2, 10, 10], "segmentation": [[2, 2, 12, 2, 12, 12]]}
    path, root = _dataset(tmp_path, [dict(QUIRKS["self-intersecting"]), clean])
    result = _check(path, root, strict=True, skip_invalid=True)
    assert result.ok and [a["id"] for a in result.data["annotations"]] == [2]
    assert all(p.dropped for p in result.report.problems if p.level == "error")


def test_summary_is_short_counts_by_kind_examples_and_the_full_list(tmp_path):
    report = ValidationReport()
    for i in range(300):
        report.add(
            "self-intersecting",
            f"ann.json annotation id {i}",
            "polygon 0 of 1 is self-intersecting",
            level="warning",
        )
    for i in range(40):
        report.add(
            "border",
            f"ann.json annotation id {1000 + i}",
            "passes the border",
            level="warning",
            repair="clipped",
        )
    report.report_path = "out/validation_report.json"
    lines = report.summary(examples=3).splitlines()
    assert lines[0] == "340 warning(s): 300 self-intersecting, 40 border (repaired)"
    assert len(lines) == 4 and lines[-1] == "full list: out/validation_report.json"
    assert "annotation id 0:" in lines[1] and "annotation id 1000:" in lines[2]


def test_docs_table_lists_every_warning_kind():
    docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "validation.md")).read()
    missing = [kind for kind in WARNINGS if f"`{kind}`" not in docs]
    assert not missing, f"docs/validation.md's policy table lacks {missing}"
