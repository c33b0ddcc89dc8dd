"""validate() on registered COCO datasets: failing, --skip-invalid re-registration, clean cache."""

import json
import os
import uuid

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from PIL import Image

from gn_det.validation import use_cleaned_datasets, validate


@pytest.fixture
def dataset(tmp_path):
    """A registered 3-image dataset whose image 2 has one refused annotation (id 21, category 5)."""
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for i in (1, 2, 3):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 40, "height": 30})
        for k, w in ((1, 10), (2, 6)):
            annotations.append(
                {
                    "id": 10 * i + k,
                    "image_id": i,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": 50.0,
                    "bbox": [2, 2, w, 5],
                    "segmentation": [[2, 2, 2 + w, 2, 2 + w, 7, 2, 7]],
                }
            )
    annotations[2]["category_id"] = 5  # annotation 21: not in 'categories'
    json_file = tmp_path / "train.json"
    json_file.write_text(
        json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}
        )
    )
    name = f"test_shapes_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_file), str(tmp_path / "images"))
    yield name, json_file
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _opts(name, out_dir):
    return [
        "DATASETS.TRAIN",
        f"('{name}',)",
        "DATASETS.TEST",
        "()",
        "MODEL.MASK_ON",
        "True",
        "OUTPUT_DIR",
        str(out_dir),
    ]


def test_invalid_record_fails_validation_naming_the_dataset_record(dataset, tmp_path):
    name, json_file = dataset
    report = validate(None, _opts(name, tmp_path / "out"))
    assert not report.ok
    [problem] = report.problems
    assert problem.kind == "unknown-category" and problem.where.startswith(
        f"{json_file} image id 2 annotation id 21"
    )


def test_skip_invalid_reregisters_the_dataset_without_the_bad_records(dataset, tmp_path):
    name, _ = dataset
    report = validate(None, _opts(name, tmp_path / "out"), skip_invalid=True)
    assert report.ok and [p.dropped for p in report.problems] == [True]
    cleaned = report.cleaned_datasets[name]
    assert cleaned == str(tmp_path / "out" / "validated_datasets" / f"{name}.json")
    assert report.counts[name].annotations_dropped == 1 and report.counts[name].dropped_by_kind == {"unknown-category": 1}
    dicts = DatasetCatalog.get(name)  # Detectron2's loader, now reading the cleaned json
    kept = {d["image_id"]: [a["bbox"][2] for a in d["annotations"]] for d in dicts}
    assert kept == {1: [10, 6], 2: [6], 3: [10, 6]}  # only annotation 21 is gone
    assert MetadataCatalog.get(name).json_file == cleaned and MetadataCatalog.get(
        name
    ).thing_classes == ["box"]
    use_cleaned_datasets(report.cleaned_datasets)  # idempotent, as each training process calls it
    assert MetadataCatalog.get(name).json_file == cleaned


def test_clean_dataset_is_not_rechecked_until_its_json_changes(dataset, tmp_path):
    name, json_file = dataset
    data = json.loads(json_file.read_text())
    data["annotations"][2]["category_id"] = 1  # fix annotation 21
    json_file.write_text(json.dumps(data))
    first = validate(None, _opts(name, tmp_path / "out"))
    assert first.ok and not any("unchanged since validated clean" in c for c in first.checked)
    second = validate(None, _opts(name, tmp_path / "out"))
    assert second.ok and any("unchanged since validated clean" in c for c in second.checked)
    data["annotations"][2]["category_id"] = 5  # broken again: the json changed, so it is re-checked
    json_file.write_text(json.dumps(data))
    os.utime(json_file, ns=(1, 1))
    assert not validate(None, _opts(name, tmp_path / "out")).ok


def test_repairs_are_what_detectron2_loads(dataset, tmp_path):
    name, json_file = dataset
    data = json.loads(json_file.read_text())
    data["annotations"][2]["category_id"] = 1  # annotation 21 valid again
    data["annotations"][0]["bbox"] = [2, 2, "10", "5"]  # a labeling service's strings
    data["annotations"][1]["iscrowd"] = "0"
    json_file.write_text(json.dumps(data))
    report = validate(None, _opts(name, tmp_path / "out"))
    assert report.ok and [p.kind for p in report.warnings] == ["numeric-string", "numeric-string"]
    assert report.errors == [] and name in report.cleaned_datasets
    first = {a["bbox"][2]: a for a in DatasetCatalog.get(name)[0]["annotations"]}
    assert first[10.0]["bbox"] == [2, 2, 10.0, 5.0]
    assert first[6]["iscrowd"] == 0 and type(first[6]["iscrowd"]) is int


def test_train_and_test_datasets_with_other_classes_stop_before_launch(dataset, tmp_path):
    name, json_file = dataset
    data = json.loads(json_file.read_text())
    data["annotations"][2]["category_id"] = 1  # annotation 21 valid: only the classes differ
    json_file.write_text(json.dumps(data))
    other_json = tmp_path / "val.json"
    other_json.write_text(json.dumps(data | {"categories": [{"id": 1, "name": "object"}]}))
    other = f"{name}_val"
    register_coco_instances(
        other, {"thing_classes": ["object"]}, str(other_json), str(tmp_path / "images")
    )
    MetadataCatalog.get(name).set(thing_classes=["box"])
    opts = _opts(name, tmp_path / "out")
    opts[opts.index("DATASETS.TEST") + 1] = f"('{other}',)"
    try:
        report = validate(None, opts)
        assert [p.kind for p in report.errors] == ["dataset-classes"], report.format()
        message = report.errors[0].message
        assert "['box']" in message and "['object']" in message and "no region has a label" in message
        evaluation = validate(None, opts, eval_only=True)
        assert not [p for p in evaluation.errors if p.kind == "dataset-classes"]
    finally:
        DatasetCatalog.remove(other)
        MetadataCatalog.remove(other)
