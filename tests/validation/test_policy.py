"""The dataset rule (gn_det/validation/policy.py) on the problems real datasets showed (issue 28),
each reproduced on a small fixture: a labeling service's COCO export with numbers as strings, a
VIA project with one degenerate region and a few unlabelled ones, unlabelled polylines beside
labelled polygons; what a refusal says; the embedded dataset; --strict.
"""

import json
import os
import uuid

import pytest
from PIL import Image

from gn_det.validation import RULES, check_coco_json, check_dataset
from gn_det.validation.policy import OUTCOMES

W, H = 60, 40


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GN_DET_CACHE_DIR", str(tmp_path / "cache"))


def _string_box_export(tmp_path, n=12):
    """A labeling service's COCO export: bbox width and height as numeric strings, polygons too."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (W, H)).save(tmp_path / "images" / "a.jpg")
    annotations = [{"id": k, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 30.0,
                    "bbox": [2 + k, 3, "5.0337", "6.4206"],
                    "segmentation": [[2 + k, 3, 7.0337 + k, 3, 7.0337 + k, 9.4206, 2 + k, 9.4206]]}
                   for k in range(n)]
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
            "annotations": annotations, "categories": [{"id": 1, "name": "tooth"}]}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(data))
    return str(path), str(tmp_path / "images")


def test_boxes_as_numeric_strings_are_repaired_and_counted_not_dropped(tmp_path):
    path, root = _string_box_export(tmp_path)
    for skip_invalid in (False, True):
        result = check_coco_json(path, root, require_masks=True, skip_invalid=skip_invalid)
        assert result.ok and [p.kind for p in result.report.problems] == ["numeric-string"] * 12
        assert (result.counts.annotations_repaired, result.counts.annotations_dropped) == (12, 0)
        assert result.data["annotations"][0]["bbox"] == [2.0, 3.0, 5.0337, 6.4206]


def test_a_training_set_left_without_usable_annotations_is_an_error_even_with_skip_invalid(tmp_path):
    path, root = _string_box_export(tmp_path, n=2)
    data = json.loads(open(path).read())
    for ann in data["annotations"]:
        ann["category_id"] = 9  # unknown: refused, and dropped by --skip-invalid
    open(path, "w").write(json.dumps(data))
    result = check_coco_json(path, root, require_masks=True, skip_invalid=True)
    assert not result.ok and result.data is None
    (error,) = result.report.errors
    assert error.kind == "no-usable-annotation" and "{'unknown-category': 2}" in error.message
    assert "0 annotations" not in result.report.format() or "Validation FAILED" in result.report.format()


def _via(tmp_path, regions_per_image, attribute="label"):
    (tmp_path / "img").mkdir(exist_ok=True)
    data = {}
    for i, regions in enumerate(regions_per_image):
        Image.new("RGB", (W, H)).save(tmp_path / "img" / f"{i}.jpg")
        data[f"{i}.jpg1"] = {"filename": f"{i}.jpg", "size": 1, "file_attributes": {}, "regions": [
            {"shape_attributes": shape, "region_attributes": {attribute: label} if label else {}}
            for shape, label in regions]}
    path = tmp_path / "via.json"
    path.write_text(json.dumps(data))
    return str(path), str(tmp_path / "img")


def _polygon(x, label):
    return {"name": "polygon", "all_points_x": [x, x + 8, x + 8, x], "all_points_y": [5, 5, 15, 15]}, label


def test_one_degenerate_region_among_many_is_dropped_and_counted_never_a_refusal(tmp_path):
    regions = [[_polygon(4 * k % 50, ["a", "b", "c"][k % 3]) for k in range(20)] for _ in range(5)]
    regions[2][7] = ({"name": "rect", "x": 30, "y": 10, "width": 0, "height": 0}, "b")  # 0 x 0
    path, root = _via(tmp_path, regions)
    result = check_dataset(path, root, require_masks=True)
    assert result.ok, result.report.format()
    (drop,) = result.report.problems
    assert (drop.kind, drop.outcome) == ("no-mask", "drop") and "['2.jpg1'] regions[7]" in drop.where
    assert (result.counts.annotations_in, result.counts.annotations_dropped) == (100, 1)
    assert len(result.data["annotations"]) == 99


def test_regions_without_a_label_are_left_out_never_a_new_class(tmp_path):
    regions = [[_polygon(5, "kudzu"), _polygon(20, "leaf"), _polygon(35, None)], [_polygon(5, None), _polygon(20, "leaf")]]
    path, root = _via(tmp_path, regions)
    result = check_dataset(path, root, require_masks=True)
    assert result.ok and [c["name"] for c in result.data["categories"]] == ["kudzu", "leaf"]
    assert [(p.kind, p.outcome) for p in result.report.problems] == [("unlabeled-region", "drop")] * 2
    assert result.counts.dropped_by_kind == {"unlabeled-region": 2} and len(result.data["annotations"]) == 3
    assert "2 dropped (2 unlabeled-region)" in result.report.format()


def test_a_dataset_without_any_label_keeps_one_class_which_the_user_can_name(tmp_path):
    path, root = _via(tmp_path, [[_polygon(5, None), _polygon(20, None)]])
    result = check_dataset(path, root, require_masks=True)
    assert result.ok and result.report.problems == [] and result.metadata["thing_classes"] == ["object"]
    named = check_dataset(path, root, require_masks=True, unlabeled_class="balloon")
    assert named.metadata["thing_classes"] == ["balloon"]


def test_unlabelled_polylines_beside_labelled_polygons_are_left_out(tmp_path):
    polyline = {"name": "polyline", "all_points_x": [2, 20, 40], "all_points_y": [30, 35, 30]}
    path, root = _via(tmp_path, [[_polygon(5, "crack"), (polyline, None), (polyline, None)]])
    result = check_dataset(path, root, require_masks=True)
    assert result.ok and result.counts.dropped_by_kind == {"unlabeled-region": 2}


def test_labelled_polylines_are_refused_with_the_way_forward(tmp_path):
    polyline = {"name": "polyline", "all_points_x": [2, 20, 40], "all_points_y": [30, 35, 30]}
    path, root = _via(tmp_path, [[_polygon(5, "crack"), (polyline, "crack"), (polyline, "crack")]])
    result = check_dataset(path, root, require_masks=True, dataset_name="cracks")
    assert not result.ok and {p.kind for p in result.report.errors} == {"region"}
    text = result.report.format()
    assert "To train cracks without the records refused above, add --skip-invalid: it drops 2 annotation(s) " \
           "and 0 image(s)" in text
    skipped = check_dataset(path, root, require_masks=True, dataset_name="cracks", skip_invalid=True)
    assert skipped.ok and len(skipped.data["annotations"]) == 1
    assert skipped.counts.annotations_in == 3 and skipped.counts.annotations_dropped == 2


def test_a_failed_dataset_flag_gives_no_follow_on_not_registered_error(tmp_path):
    from gn_det.data import register_dataset
    from gn_det.engine import argument_parser
    from gn_det.validation import validate_args

    polyline = {"name": "polyline", "all_points_x": [2, 20, 40], "all_points_y": [30, 35, 30]}
    path, root = _via(tmp_path, [[_polygon(5, "crack"), (polyline, "crack")]])
    name = f"cracks_{uuid.uuid4().hex[:6]}"
    args = argument_parser().parse_args(["--dataset", name, path, root, "DATASETS.TRAIN", f"('{name}',)",
                                         "DATASETS.TEST", "()", "MODEL.MASK_ON", "True",
                                         "OUTPUT_DIR", str(tmp_path / "out")])
    report = validate_args(args, register_dataset=register_dataset)
    assert [p.kind for p in report.errors] == ["region"]
    assert "is not registered" not in report.format()


def test_the_embedded_dataset_validates_without_a_finding(tmp_path):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tiny_run import make_split

    json_file, image_root = make_split(tmp_path, "shapes", num_images=6, seed=3)
    result = check_coco_json(json_file, image_root, require_masks=True, for_evaluation=True, mask_format="bitmask")
    assert result.ok and result.report.problems == [], result.report.format()


QUIRKS = {  # one per outcome the default gives; --strict refuses each
    "numeric-string": lambda a: a.__setitem__("bbox", [2, 3, "10", "10"]),
    "no-mask": lambda a: a.__setitem__("segmentation", [[1, 1, 2, 2]]),
    "mostly-outside": lambda a: a.update(bbox=[50, 3, 30, 10], segmentation=[[50, 3, 80, 3, 80, 13, 50, 13]]),
}


@pytest.mark.parametrize("kind", sorted(QUIRKS))
def test_strict_makes_every_warning_repair_and_drop_an_error(tmp_path, kind):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (W, H)).save(tmp_path / "images" / "a.png")
    anns = [{"id": k, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 3, 10, 10],
             "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]]} for k in (1, 2)]
    QUIRKS[kind](anns[0])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
                                "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))
    default = check_coco_json(str(path), str(tmp_path / "images"), require_masks=True)
    assert default.ok and [p.kind for p in default.report.problems] == [kind]
    strict = check_coco_json(str(path), str(tmp_path / "images"), require_masks=True, strict=True)
    assert not strict.ok and [p.kind for p in strict.report.errors] == [kind]
    assert "an error under --strict" in strict.report.errors[0].message
    dropped = check_coco_json(str(path), str(tmp_path / "images"), require_masks=True, strict=True, skip_invalid=True)
    assert dropped.ok and [a["id"] for a in dropped.data["annotations"]] == [2]


def test_every_rule_has_an_outcome_and_is_in_the_docs_table():
    docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "validation.md")).read()
    assert all(rule.outcome in OUTCOMES for rule in RULES.values())
    missing = [kind for kind in RULES if f"| `{kind}` |" not in docs]
    assert not missing, f"docs/validation.md's rule table lacks {missing}"
