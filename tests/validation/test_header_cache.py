"""Image headers remembered between runs into one OUTPUT_DIR (header_cache.py): an unchanged
file is not opened again and the report is the same; a changed file is read again."""

import json
import os
import uuid

import numpy as np
import pytest
from PIL import Image

from gn_det.validation import check_coco_json
from gn_det.validation import image_files

W, H = 40, 30


def _save(path, size=(W, H), **kwargs):
    pixels = np.random.RandomState(size[0]).randint(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(path, **kwargs)


@pytest.fixture
def dataset(tmp_path):
    """a.png, b.jpg (EXIF-rotated, recorded with its stored size: repaired) and c.jpg."""
    root = tmp_path / "images"
    root.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 8
    _save(root / "a.png")
    _save(root / "b.jpg", exif=exif)
    _save(root / "c.jpg")
    images = [{"id": i, "file_name": n, "width": W, "height": H} for i, n in enumerate(["a.png", "b.jpg", "c.jpg"], 1)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [2, 3, 10, 10],
             "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]]} for i in (1, 2, 3)]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))
    return str(path), str(root)


@pytest.fixture
def opened(monkeypatch):
    """The image files PIL opens."""
    paths = []
    real_open = image_files.Image.open
    monkeypatch.setattr(image_files.Image, "open", lambda p, *a, **k: paths.append(os.path.basename(p)) or real_open(p, *a, **k))
    return paths


def _check(dataset, tmp_path):
    return check_coco_json(*dataset, require_masks=True, header_cache_dir=str(tmp_path / "out"))


def test_a_second_check_opens_no_unchanged_image_and_reports_the_same(dataset, tmp_path, opened):
    first = _check(dataset, tmp_path)
    assert sorted(opened) == ["a.png", "b.jpg", "c.jpg"] and [p.kind for p in first.report.problems] == ["exif-rotated"]
    opened.clear()
    second = _check(dataset, tmp_path)
    assert opened == []
    assert second.report.format() == first.report.format() and second.data == first.data


def test_a_file_changed_since_is_read_again(dataset, tmp_path, opened):
    _check(dataset, tmp_path)
    _save(os.path.join(dataset[1], "c.jpg"), size=(W + 4, H))
    opened.clear()
    result = _check(dataset, tmp_path)
    assert opened == ["c.jpg"] and [p.kind for p in result.report.errors] == ["image-size"]


def test_a_file_rewritten_to_its_old_size_and_time_is_read_again(dataset, tmp_path, opened):
    _check(dataset, tmp_path)
    path = os.path.join(dataset[1], "c.jpg")
    before = os.stat(path)
    _save(path, size=(W // 2, H // 2))  # fewer bytes: padded back to the old size after its end
    with open(path, "ab") as f:
        f.write(b"\0" * (before.st_size - os.path.getsize(path)))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    opened.clear()
    result = _check(dataset, tmp_path)
    assert opened == ["c.jpg"] and [p.kind for p in result.report.errors] == ["image-size"]


def test_an_unreadable_file_is_read_again_every_time(dataset, tmp_path, opened):
    with open(os.path.join(dataset[1], "c.jpg"), "wb") as f:
        f.write(b"not an image")
    _check(dataset, tmp_path)
    opened.clear()
    result = _check(dataset, tmp_path)
    assert opened == ["c.jpg"] and "unreadable" in result.report.errors[0].message


def test_the_train_commands_validation_remembers_headers_in_output_dir(dataset, tmp_path, opened):
    from gn_det.data import register_dataset
    from gn_det.engine import argument_parser
    from gn_det.validation import validate_args

    name = f"headers_{uuid.uuid4().hex[:6]}"
    argv = ["--dataset", name, *dataset, "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
            "OUTPUT_DIR", str(tmp_path / "run")]
    assert validate_args(argument_parser().parse_args(argv), register_dataset=register_dataset).ok
    assert sorted(opened) == ["a.png", "b.jpg", "c.jpg"]
    assert [n for n in os.listdir(tmp_path / "run" / "validated_datasets") if n.startswith("image_headers_")]
    opened.clear()
    assert validate_args(argument_parser().parse_args(argv), register_dataset=register_dataset).ok
    assert opened == []  # the requeued run
