"""Image headers read as Detectron2's read_image will see the files (image_files.py): one read
per file, and the same answer whether the headers are read in one thread or in several."""

import os
import threading

import numpy as np
import pytest
from PIL import Image

from gn_det.validation import image_files
from gn_det.validation.image_files import probe_image, probe_images


def _save(path, size=(40, 30), **kwargs):
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (size[1], size[0], 3), np.uint8)).save(path, **kwargs)
    return str(path)


@pytest.fixture
def mixed_files(tmp_path):
    """One file of each kind probe_image tells apart, then plain ones, in a fixed order."""
    exif = Image.Exif()
    exif[0x0112] = 6
    truncated = _save(tmp_path / "cut.jpg", size=(320, 240))
    with open(truncated, "rb+") as f:
        f.truncate(2000)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    (tmp_path / "folder.jpg").mkdir()
    special = [_save(tmp_path / "a.png"), _save(tmp_path / "turned.jpg", exif=exif), truncated,
               str(tmp_path / "junk.jpg"), str(tmp_path / "missing.jpg"), str(tmp_path / "folder.jpg")]
    return special + [_save(tmp_path / f"{i}.jpg", size=(20 + i, 10)) for i in range(12)]


def test_each_kind_of_file_is_told_apart(mixed_files):
    png, turned, truncated, junk, missing, folder = map(probe_image, mixed_files[:6])
    assert png.size == (40, 30) and not png.error
    assert turned.size == (30, 40) and turned.stored_size == (40, 30) and turned.orientation == 6
    assert "truncated" in truncated.error and "unreadable" in junk.error
    assert missing.missing and folder.missing and "does not exist" in folder.error


@pytest.mark.parametrize("waits", [0, 100])
def test_threads_or_not_the_headers_are_the_same(mixed_files, monkeypatch, waits):
    switches = iter([0, waits])  # before and after the sample: 0 or 100 waits for the disk
    monkeypatch.setattr(image_files, "_SAMPLE", 3)
    monkeypatch.setattr(image_files, "_voluntary_switches", lambda: next(switches))
    assert probe_images(mixed_files, max_threads=4) == [probe_image(p) for p in mixed_files]


@pytest.mark.parametrize("waits, threaded", [(0, False), (100, True)])
def test_threads_only_when_the_first_reads_waited_for_the_disk(mixed_files, monkeypatch, waits, threaded):
    readers = set()
    probe = image_files.probe_image
    monkeypatch.setattr(image_files, "probe_image", lambda p: readers.add(threading.current_thread()) or probe(p))
    monkeypatch.setattr(image_files, "_SAMPLE", 3)
    switches = iter([0, waits])
    monkeypatch.setattr(image_files, "_voluntary_switches", lambda: next(switches))
    probe_images(mixed_files, max_threads=4)
    assert (readers != {threading.current_thread()}) == threaded


def test_a_dataset_check_reports_the_same_with_threads_or_not(mixed_files, tmp_path, monkeypatch):
    import json

    from gn_det.validation import check_coco_json

    images = [{"id": i, "file_name": os.path.basename(p), "width": 40, "height": 30} for i, p in enumerate(mixed_files, 1)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [2, 3, 10, 10],
             "segmentation": [[2, 3, 12, 3, 12, 13, 2, 13]]} for i in range(1, len(images) + 1)]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                   "categories": [{"id": 1, "name": "a"}]}))
    monkeypatch.setattr(image_files, "_SAMPLE", 3)
    results = []
    for waits in (0, 100):
        switches = iter([0, waits])
        monkeypatch.setattr(image_files, "_voluntary_switches", lambda: next(switches))
        results.append(check_coco_json(str(tmp_path / "ann.json"), str(tmp_path), require_masks=True, skip_invalid=True))
    sequential, threaded = results
    assert len(sequential.report.problems) >= 6 and threaded.report.format() == sequential.report.format()
    assert threaded.data == sequential.data and threaded.counts == sequential.counts
