"""The cyclic collector is paused while a COCO json is parsed, checked and loaded (gc_pause.py),
and its state is restored afterwards."""

import gc
import json

import pytest

from gn_det.data import coco_register
from gn_det.data.gc_pause import paused_gc


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_collector_is_off_inside_and_on_again_after():
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_collector_is_restored_when_the_block_raises():
    with pytest.raises(ValueError):
        with paused_gc():
            raise ValueError("bad json")
    assert gc.isenabled()


def _coco(tmp_path):
    data = {"images": [{"id": 1, "file_name": "1.jpg", "width": 4, "height": 3}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "a"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_registered_loader_reads_with_the_collector_off(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(coco_register, "load_coco_json", lambda *args: seen.append(gc.isenabled()) or [])
    coco_register.load_registered_coco(_coco(tmp_path), str(tmp_path), "gc_pause_test")
    assert seen == [False] and gc.isenabled()


def test_validation_reads_and_checks_with_the_collector_off(tmp_path, monkeypatch):
    from gn_det.validation import coco_checks

    seen = []
    read_json = coco_checks.read_json
    monkeypatch.setattr(coco_checks, "read_json", lambda *args: seen.append(gc.isenabled()) or read_json(*args))
    result = coco_checks.check_coco_json(_coco(tmp_path), str(tmp_path), check_images=False)
    assert seen == [False] and result.ok and gc.isenabled()
