"""Registering COCO-format datasets (as ``--dataset NAME JSON IMAGE_DIR`` does)."""
import json
import logging

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts

from gn_det.data import register_coco_dataset, summarize_coco_json


def _write_coco(tmp_path, name, images, annotations, categories):
    image_dir = tmp_path / f"{name}_images"
    image_dir.mkdir()
    for im in images:
        (image_dir / im["file_name"]).write_bytes(b"")  # the loader never opens them here
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path), str(image_dir)


def _image(i):
    return {"id": i, "file_name": f"{i}.png", "height": 32, "width": 32}


def _box(ann_id, image_id, category_id, iscrowd=0):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [2, 2, 10, 10],
            "area": 100, "iscrowd": iscrowd, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}


CATEGORIES = [{"id": 12, "name": "kite"}, {"id": 3, "name": "cup"}, {"id": 7, "name": "bowl"}]


def test_non_contiguous_ids_map_to_classes_in_id_order(tmp_path):
    json_file, image_dir = _write_coco(
        tmp_path, "noncontig", [_image(1), _image(2)],
        [_box(1, 1, 12), _box(2, 1, 3), _box(3, 2, 7)], CATEGORIES,
    )
    summary = register_coco_dataset("test_coco_noncontig", json_file, image_dir)
    meta = MetadataCatalog.get("test_coco_noncontig")
    assert summary.thing_classes == meta.thing_classes == ["cup", "bowl", "kite"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1, 12: 2}
    dicts = DatasetCatalog.get("test_coco_noncontig")
    assert sorted(a["category_id"] for d in dicts for a in d["annotations"]) == [0, 1, 2]


def test_images_without_usable_annotations_are_counted_and_filtered_with_a_log(tmp_path):
    images = [_image(i) for i in range(1, 6)]
    # image 3: only a crowd box; images 4 and 5: nothing.
    anns = [_box(1, 1, 3), _box(2, 2, 7), _box(3, 3, 3, iscrowd=1)]
    json_file, image_dir = _write_coco(tmp_path, "empty", images, anns, CATEGORIES)
    summary = register_coco_dataset("test_coco_empty", json_file, image_dir)
    assert (summary.num_images, summary.num_images_without_usable_annotations) == (5, 3)
    assert summary.num_crowd_annotations == 1
    assert "3 images have no usable" in summary.describe()

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    build_logger = logging.getLogger("detectron2.data.build")
    build_logger.addHandler(handler)
    level = build_logger.level
    build_logger.setLevel(logging.INFO)
    try:
        kept = get_detection_dataset_dicts(["test_coco_empty"], filter_empty=True)
    finally:
        build_logger.removeHandler(handler)
        build_logger.setLevel(level)
    assert sorted(d["image_id"] for d in kept) == [1, 2]
    assert any("Removed 3 images with no usable annotations. 2 images left." in r.getMessage() for r in records)
    # Evaluation keeps every image.
    assert len(get_detection_dataset_dicts(["test_coco_empty"], filter_empty=False)) == 5


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        register_coco_dataset("test_coco_missing", str(tmp_path / "nope.json"), str(tmp_path))
    json_file, _ = _write_coco(tmp_path, "ok", [_image(1)], [], CATEGORIES)
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        register_coco_dataset("test_coco_missing", json_file, str(tmp_path / "no_such_dir"))


def test_annotations_with_unknown_category_ids_are_rejected(tmp_path):
    json_file, image_dir = _write_coco(tmp_path, "unknown", [_image(1)], [_box(1, 1, 99)], CATEGORIES)
    with pytest.raises(ValueError, match=r"category ids \[99\]"):
        summarize_coco_json("x", json_file, image_dir)


def test_json_without_categories_is_rejected(tmp_path):
    json_file, image_dir = _write_coco(tmp_path, "nocat", [_image(1)], [], [])
    with pytest.raises(ValueError, match="no 'categories'"):
        summarize_coco_json("x", json_file, image_dir)


def test_a_name_cannot_be_rebound_to_other_files(tmp_path):
    a = _write_coco(tmp_path, "a", [_image(1)], [_box(1, 1, 3)], CATEGORIES)
    b = _write_coco(tmp_path, "b", [_image(1)], [_box(1, 1, 3)], CATEGORIES)
    register_coco_dataset("test_coco_rebind", *a)
    register_coco_dataset("test_coco_rebind", *a)  # same files: fine
    with pytest.raises(ValueError, match="already registered"):
        register_coco_dataset("test_coco_rebind", *b)


def test_rle_and_polygon_masks_are_detected(tmp_path):
    rle = {"size": [32, 32], "counts": "0`0"}
    ann = dict(_box(1, 1, 3), segmentation=rle)
    json_file, image_dir = _write_coco(tmp_path, "rle", [_image(1)], [ann, _box(2, 1, 7)], CATEGORIES)
    assert summarize_coco_json("x", json_file, image_dir).segmentation_format == "mixed"


def test_a_json_validation_read_is_handed_to_detectron2s_loader_once(tmp_path, monkeypatch):
    import pycocotools.coco

    from detectron2.data.datasets import load_coco_json

    from gn_det.data.coco_register import summarize_coco_dict

    json_file, image_dir = _write_coco(tmp_path, "handed", [_image(1), _image(2)],
                                       [_box(1, 1, 12), _box(2, 2, 3), _box(3, 2, 7, iscrowd=1)], CATEGORIES)
    parsed = json.loads(open(json_file).read())
    metadata = summarize_coco_dict("test_coco_handed", json_file, image_dir, parsed).metadata()
    register_coco_dataset("test_coco_handed", json_file, image_dir, metadata=metadata, parsed=parsed)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    first = DatasetCatalog.get("test_coco_handed")  # from the parsed json: the file is not read
    assert json_file not in opened and pycocotools.coco.COCO.__name__ == "COCO"  # the swap is undone
    second = DatasetCatalog.get("test_coco_handed")  # handed once: now Detectron2 reads the file
    assert json_file in opened
    assert first == second == load_coco_json(json_file, image_dir, "test_coco_handed")
    assert MetadataCatalog.get("test_coco_handed").thing_classes == ["cup", "bowl", "kite"]
