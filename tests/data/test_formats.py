"""VIA and labelme import (gn_det/data/formats): detected, converted, registered as COCO.

The fixtures mimic the real files of docs/datasets.md: kudzu's VIA 2 region json (regions a
list, two attributes 'inseto'/'insect' with the same value, a validation split without
labels), Detectron2's balloon json (VIA 1: regions a dict, no labels), circles and ellipses
(a VIA screenshot set), and a labelme folder that also holds an exported COCO json.
"""

import json
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from gn_det.data import register_coco_dataset, register_dataset
from gn_det.data.formats import convert, detect_format
from gn_det.validation import check_dataset

W, H = 60, 40


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GN_DET_CACHE_DIR", str(tmp_path / "cache"))


def _images(folder, *names, size=(W, H)):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", size).save(folder / name)


def _polygon(xs, ys, **attributes):
    return {
        "shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
        "region_attributes": attributes,
    }


def _via_region_json(tmp_path, regions_as_dict=False):
    _images(tmp_path / "img", "1.jpg", "2.jpg")
    regions_1 = [
        _polygon([5, 20, 20, 5], [5, 5, 20, 20], inseto="kudzu", insect="kudzu"),
        {
            "shape_attributes": {"name": "rect", "x": 30, "y": 5, "width": 10, "height": 8},
            "region_attributes": {"label": "leaf"},
        },
    ]
    regions_2 = [
        {
            "shape_attributes": {"name": "circle", "cx": 20, "cy": 20, "r": 6},
            "region_attributes": {"label": "leaf"},
        },
        {
            "shape_attributes": {
                "name": "ellipse",
                "cx": 40,
                "cy": 20,
                "rx": 8,
                "ry": 4,
                "theta": 0.5,
            },
            "region_attributes": {"label": {"kudzu": True, "leaf": False}},
        },
    ]
    if regions_as_dict:
        regions_1 = {str(i): r for i, r in enumerate(regions_1)}
    data = {
        "1.jpg1234": {
            "filename": "1.jpg",
            "size": 1234,
            "regions": regions_1,
            "file_attributes": {},
        },
        "2.jpg99": {"filename": "2.jpg", "size": 99, "regions": regions_2, "file_attributes": {}},
    }
    path = tmp_path / "via_region_data.json"
    path.write_text(json.dumps(data))
    return str(path), str(tmp_path / "img"), data


def _name():
    return f"test_formats_{uuid.uuid4().hex[:8]}"


def test_via_region_json_registers_like_the_same_data_as_coco(tmp_path):
    path, root, _ = _via_region_json(tmp_path)
    assert detect_format(path)[0] == "via"
    name = _name()
    summary = register_dataset(name, path, root)
    assert summary.thing_classes == ["kudzu", "leaf"]  # labels, sorted
    records = DatasetCatalog.get(name)
    assert [len(r["annotations"]) for r in records] == [2, 2]
    assert [a["category_id"] for r in records for a in r["annotations"]] == [0, 1, 1, 0]
    assert records[0]["height"] == H and records[0]["width"] == W  # from the image header
    rect = records[0]["annotations"][1]
    assert rect["segmentation"] == [[30, 5, 40, 5, 40, 13, 30, 13]] and rect["bbox"] == [
        30,
        5,
        10,
        8,
    ]
    circle = records[1]["annotations"][0]["segmentation"][0]
    radii = np.hypot(np.array(circle[0::2]) - 20, np.array(circle[1::2]) - 20)
    assert len(circle) >= 60 and np.allclose(radii, 6, atol=0.1)
    # Registered as a COCO dataset is: the converted json read by register_coco_dataset.
    json_file = MetadataCatalog.get(name).json_file
    again = _name()
    register_coco_dataset(again, json_file, root)
    assert DatasetCatalog.get(again) == records
    assert MetadataCatalog.get(name).source_format == "via"


def test_via_1_regions_as_a_dict_and_a_project_json_convert_the_same(tmp_path):
    path, root, data = _via_region_json(tmp_path, regions_as_dict=True)
    project = tmp_path / "project.json"
    project.write_text(
        json.dumps({"_via_settings": {}, "_via_img_metadata": data, "_via_attributes": {}})
    )
    a, b = convert(path, root)[1].coco(), convert(str(project), root)[1].coco()
    assert a["annotations"] == b["annotations"] and a["categories"] == b["categories"]
    assert len(a["annotations"]) == 4


def test_via_regions_without_any_label_form_one_class(tmp_path):
    _images(tmp_path / "img", "b.jpg")
    data = {
        "b.jpg5": {
            "filename": "b.jpg",
            "size": 5,
            "file_attributes": {},
            "regions": {
                "0": _polygon([5, 20, 20], [5, 5, 20]),
                "1": _polygon([30, 50, 50], [5, 5, 30]),
            },
        }
    }
    path = tmp_path / "balloon.json"
    path.write_text(json.dumps(data))
    result = check_dataset(str(path), str(tmp_path / "img"), require_masks=True)
    assert result.ok and [c["name"] for c in result.data["categories"]] == ["object"]
    assert result.report.problems == [] and check_dataset(str(path), str(tmp_path / "img"), strict=True).ok


def test_malformed_via_gets_named_errors_all_at_once(tmp_path):
    _images(tmp_path / "img", "1.jpg")
    data = {
        "1.jpg1": {
            "filename": "1.jpg",
            "size": 1,
            "regions": [
                _polygon([5, 20, 20, 5], [5, 5, 20], label="leaf"),
                {"shape_attributes": {"name": "polyline", "all_points_x": [1, 2, 9], "all_points_y": [1, 2, 1]},
                 "region_attributes": {"label": "leaf"}},
                {"region_attributes": {}},
                _polygon([5, 20, 20], [5, 5, 20], kind="b", color="c"),
                _polygon([30, 50, 50], [5, 5, 30], label="leaf"),
            ],
        },
        "gone.jpg1": {"filename": "gone.jpg", "size": 1, "regions": [_polygon([5, 20, 20], [5, 5, 20], label="leaf")]},
    }
    path = tmp_path / "via.json"
    path.write_text(json.dumps(data))
    result = check_dataset(str(path), str(tmp_path / "img"))
    assert not result.ok and result.data is None
    messages = {p.where.split(str(path))[-1]: p.message for p in result.report.errors}
    assert "all_points_x has 4 values but all_points_y has 3" in messages[" ['1.jpg1'] regions[0]"]
    assert "labelled polyline ('leaf') is an open line" in messages[" ['1.jpg1'] regions[1]"]
    assert "'shape_attributes'" in messages[" ['1.jpg1'] regions[2]"]
    assert messages[" ['1.jpg1'] regions[3]"].startswith("region attributes")
    assert "gone.jpg" in messages[" ['gone.jpg1']"] and "does not exist" in messages[" ['gone.jpg1']"]
    assert result.counts.skippable_annotations == 5 and result.counts.skippable_images == 1
    with pytest.raises(ValueError, match="5 record"):
        register_dataset(_name(), str(path), str(tmp_path / "img"))
    # --skip-invalid drops exactly those records and keeps the rest.
    kept = check_dataset(str(path), str(tmp_path / "img"), skip_invalid=True)
    assert kept.ok and len(kept.data["annotations"]) == 1 and len(kept.data["images"]) == 1
    assert kept.counts.annotations_dropped == 5 and kept.counts.dropped_by_kind == {"via records refused": 5}


def _labelme(folder, name, image_path, shapes, size=(W, H)):
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "version": "5.0.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageWidth": size[0],
        "imageHeight": size[1],
    }
    (folder / name).write_text(json.dumps(data))


def _shape(label, points, shape_type="polygon", group_id=None):
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "shape_type": shape_type,
        "flags": {},
    }


def test_labelme_folder_with_groups_rectangles_circles_and_windows_paths(tmp_path):
    _images(tmp_path / "images", "a.jpg", "b.jpg")
    ann = tmp_path / "ann"
    _labelme(
        ann,
        "a.json",
        "..\\images\\a.jpg",
        [
            _shape("tooth 21", [[5, 5], [15, 5], [15, 15]], group_id=1),
            _shape("tooth 21", [[20, 5], [30, 5], [30, 15]], group_id=1),  # same object, occluded
            _shape("gum", [[35, 5], [45, 20]], "rectangle"),
        ],
    )
    _labelme(ann, "b.json", "b.jpg", [_shape("gum", [[20, 20], [26, 20]], "circle")])
    (ann / "trainval.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": []})
    )
    result = check_dataset(str(ann), str(tmp_path / "images"), require_masks=True)
    assert result.ok, result.report.format()
    assert [p.kind for p in result.report.warnings] == ["not-labelme-file"]
    coco = result.data
    assert [c["name"] for c in coco["categories"]] == ["gum", "tooth 21"]
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg"]
    tooth = next(a for a in coco["annotations"] if a["category_id"] == 2)
    assert len(tooth["segmentation"]) == 2 and tooth["bbox"] == [5.0, 5.0, 25.0, 10.0]
    rle = mask_util.merge(mask_util.frPyObjects(tooth["segmentation"], H, W))
    assert tooth["area"] == float(mask_util.area(rle))
    name = _name()
    register_dataset(name, str(ann), str(tmp_path / "images"))
    assert MetadataCatalog.get(name).thing_classes == ["gum", "tooth 21"]


def test_labelme_size_that_disagrees_with_the_image_is_an_error(tmp_path):
    _images(tmp_path / "images", "a.jpg")
    _labelme(
        tmp_path / "ann",
        "a.json",
        "a.jpg",
        [_shape("x", [[5, 5], [15, 5], [15, 15]])],
        size=(W * 2, H * 2),
    )
    result = check_dataset(str(tmp_path / "ann"), str(tmp_path / "images"))
    assert [p.kind for p in result.report.errors] == ["image-size"]
    assert "a.json (a.jpg)" in result.report.errors[0].where  # named by its source file


def test_labelme_shapes_without_area_are_dropped_and_bad_files_refused(tmp_path):
    _images(tmp_path / "images", "a.jpg")
    ann = tmp_path / "ann"
    _labelme(
        ann,
        "a.json",
        "a.jpg",
        [_shape("x", [[5, 5], [15, 5]], "line"), _shape("y", [[5, 5], [6, 6]]), _shape("x", [[5, 5], [25, 5], [25, 25]])],
    )
    _labelme(ann, "b.json", "missing.jpg", [])
    b = json.loads((ann / "b.json").read_text())
    (ann / "b.json").write_text(json.dumps({**b, "imageData": "not base64 of an image"}))
    (ann / "c.json").write_text("{not json")
    result = check_dataset(str(ann), str(tmp_path / "images"), require_masks=True)
    by_where = {p.where.split(str(ann) + "/")[1].split(" (")[0]: (p.kind, p.outcome, p.message)
                for p in result.report.problems if str(ann) + "/" in p.where}
    assert by_where["a.json shapes[0]"][:2] == ("no-mask", "drop") and "2 distinct" in by_where["a.json shapes[0]"][2]
    assert by_where["a.json shapes[1]"][:2] == ("no-mask", "drop")
    assert by_where["b.json"][:2] == ("image-file", "error") and "'imageData' is not an image" in by_where["b.json"][2]
    assert by_where["c.json"][:2] == ("image-record", "error") and "not a readable json" in by_where["c.json"][2]


def test_convert_tool_writes_a_coco_json_that_passes_the_coco_checks(tmp_path):
    import os
    import subprocess
    import sys

    from gn_det.validation import check_coco_json

    path, root, _ = _via_region_json(tmp_path)
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "tools/convert_to_coco.py", path, root, str(out)],
        capture_output=True,
        text=True,
        cwd=os.path.join(os.path.dirname(__file__), "..", ".."),
    )
    assert done.returncode == 0, done.stderr
    assert '2 classes ["kudzu", "leaf"]' in done.stdout
    result = check_coco_json(str(out), root, require_masks=True, for_evaluation=True)
    assert result.ok and result.report.problems == []
    assert len(json.loads(out.read_text())["annotations"]) == 4


def test_dataset_flag_takes_a_via_json_and_validates_it_like_coco(tmp_path):
    from gn_det.engine import argument_parser
    from gn_det.validation import validate_args

    path, root, _ = _via_region_json(tmp_path)
    name = _name()
    args = argument_parser().parse_args(
        [
            "--dataset",
            name,
            path,
            root,
            "DATASETS.TRAIN",
            f"('{name}',)",
            "DATASETS.TEST",
            "()",
            "MODEL.MASK_ON",
            "True",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ]
    )
    report = validate_args(args, register_dataset=register_dataset)
    assert report.ok and report.problems == [], report.format()
    assert MetadataCatalog.get(name).thing_classes == ["kudzu", "leaf"]
    converted = MetadataCatalog.get(name).json_file
    assert converted.endswith(".json") and f"COCO json {converted}" in report.checked  # checked


def test_via_3_project_is_refused_naming_what_to_export(tmp_path):
    path = tmp_path / "via3.json"
    path.write_text(
        json.dumps(
            {
                "project": {"pname": "p"},
                "config": {},
                "attribute": {},
                "file": {},
                "metadata": {},
                "view": {},
            }
        )
    )
    assert detect_format(str(path))[0] == "via3"
    (error,) = check_dataset(str(path), str(tmp_path)).report.errors
    assert "VIA 3 project" in error.message and "COCO json" in error.message and error.kind == "json-structure"
    with pytest.raises(ValueError, match="VIA 3 project"):
        register_dataset(_name(), str(path), str(tmp_path))
