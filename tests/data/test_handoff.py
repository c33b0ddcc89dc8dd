"""The launcher hands the jsons it validated to the training processes as files (handoff.py):
they load exactly the validated data, only while the json is unchanged, never code, and the
files go away."""

import json
import os
import pickle

from detectron2.data.datasets import load_coco_json

from gn_det.data import coco_register
from gn_det.data.handoff import handed_over, read_handoff, write_handoff


def _coco_json(tmp_path, name="ann.json"):
    data = {"images": [{"id": 1, "file_name": "1.jpg", "width": 40, "height": 30}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [1.5, 2, 10, 8], "iscrowd": 0,
                             "area": 80.0, "segmentation": [[1.5, 2, 11.5, 2, 11.5, 10]]}],
            "categories": [{"id": 3, "name": "cup"}]}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path), data


def test_each_reader_loads_the_validated_data_and_the_last_one_removes_the_file(tmp_path):
    json_file, data = _coco_json(tmp_path)
    entry = write_handoff({json_file: data}, str(tmp_path / "handoff"), readers=2)[json_file]
    assert read_handoff(json_file, entry, reader=0) == data and os.path.exists(entry["path"])
    assert read_handoff(json_file, entry, reader=1) == data
    assert os.listdir(tmp_path / "handoff") == []


def test_a_json_changed_since_validation_is_read_again(tmp_path):
    json_file, data = _coco_json(tmp_path)
    entry = write_handoff({json_file: data}, str(tmp_path / "handoff"), readers=1)[json_file]
    with open(json_file, "a") as f:
        f.write(" ")
    assert read_handoff(json_file, entry, reader=0) is None


class _Payload:
    def __reduce__(self):
        return (os.mkdir, ("should_not_exist",))


def test_a_file_holding_code_is_not_run(tmp_path, monkeypatch):
    json_file, data = _coco_json(tmp_path)
    entry = write_handoff({json_file: data}, str(tmp_path / "handoff"), readers=1)[json_file]
    with open(entry["path"], "wb") as f:
        pickle.dump({"images": [_Payload()]}, f)
    monkeypatch.chdir(tmp_path)
    assert read_handoff(json_file, entry, reader=0) is None and not (tmp_path / "should_not_exist").exists()


def test_handed_over_empties_the_launchers_copy_and_removes_the_folder_afterwards(tmp_path):
    json_file, data = _coco_json(tmp_path)
    parsed = {json_file: data}
    with handed_over(parsed, str(tmp_path / "out"), readers=2) as entries:
        assert parsed == {} and os.path.isfile(entries[json_file]["path"])
    assert os.listdir(tmp_path / "out") == []


def test_a_training_process_builds_detectron2s_records_from_the_handoff_without_the_json(tmp_path, monkeypatch):
    json_file, data = _coco_json(tmp_path)
    expected = load_coco_json(json_file, str(tmp_path), "handoff_test")
    with handed_over({json_file: data}, str(tmp_path / "out"), readers=1) as entries:
        coco_register.use_handoff(entries)
        opened = []
        real_open = open
        monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
        records = coco_register.load_registered_coco(json_file, str(tmp_path), "handoff_test")
        monkeypatch.undo()
    assert records == expected and json_file not in opened
