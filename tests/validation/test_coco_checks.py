"""COCO json checks: each kind of input is named precisely and ends as policy.py says (one
test per behaviour; the differential corpus, test_corpus.py, compares them with Detectron2)."""

import copy
import json
import os

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from gn_det.data.image_size import read_image_size
from gn_det.validation import check_coco_json

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
    """n images with 2 valid annotations each, 2 categories (ids 1 and 7)."""
    images, annotations = [], []
    for i in range(1, n_images + 1):
        _image(tmp_path, f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
        annotations.append({"id": 10 * i + 1, "image_id": i, "category_id": 1, "bbox": [2, 3, 10, 10],
                            "segmentation": [_square(2, 3, 10)], "area": 100.0, "iscrowd": 0})
        annotations.append({"id": 10 * i + 2, "image_id": i, "category_id": 7, "bbox": [20, 5, 8, 12],
                            "segmentation": [[20, 5, 28, 5, 28, 17, 20, 17]], "area": 96.0, "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "square"}, {"id": 7, "name": "rect"}]}


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _check(tmp_path, data, **kwargs):
    kwargs.setdefault("require_masks", True)
    kwargs.setdefault("for_evaluation", True)
    return check_coco_json(_write(tmp_path, data), str(tmp_path / "images"), **kwargs)


def _only(result, kind, outcome):
    problems = result.report.problems
    assert [(p.kind, p.outcome) for p in problems] == [(kind, outcome)], result.report.format()
    return problems[0]


def test_valid_dataset_passes_unchanged(tmp_path):
    result = _check(tmp_path, _good_dataset(tmp_path))
    assert result.ok and result.report.problems == [] and not result.changed
    assert result.metadata["thing_classes"] == ["square", "rect"]
    assert result.metadata["thing_dataset_id_to_contiguous_id"] == {1: 0, 7: 1}


def test_not_json(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("images: [1, 2]\n")
    problem = _only(check_coco_json(str(path), str(tmp_path)), "json-syntax", "error")
    assert str(path) in problem.where and "line 1, column 1" in problem.message and "truncated" not in problem.message


def test_truncated_json_is_called_truncated(tmp_path):
    text = json.dumps(_good_dataset(tmp_path))
    path = tmp_path / "ann.json"
    path.write_text(text[: len(text) // 2])
    problem = _only(check_coco_json(str(path), str(tmp_path / "images")), "json-syntax", "error")
    assert "truncated" in problem.message


def test_missing_top_level_list(tmp_path):
    data = _good_dataset(tmp_path)
    del data["categories"]
    assert "'categories' must be a list" in _only(_check(tmp_path, data), "json-structure", "error").message


def test_annotation_without_image_id_is_refused_by_position(tmp_path):
    data = _good_dataset(tmp_path)
    del data["annotations"][2]["image_id"]
    problem = _only(_check(tmp_path, data), "annotation-record", "error")
    assert "annotation id 21 (annotations[2])" in problem.where


def test_unknown_image_id_is_dropped_as_detectron2_does(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["image_id"] = 99
    result = _check(tmp_path, data)
    problem = _only(result, "unknown-image", "drop")
    assert "annotation id 11" in problem.where and "image_id 99" in problem.message
    assert [a["id"] for a in result.data["annotations"]] == [12, 21, 22, 31, 32]
    assert result.counts.dropped_by_kind == {"unknown-image": 1}


def test_unknown_category_id_is_refused_naming_the_valid_ones(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][1]["category_id"] = 3
    problem = _only(_check(tmp_path, data), "unknown-category", "error")
    assert "annotation id 12" in problem.where and "category_id 3" in problem.message and "[1, 7]" in problem.message


def test_repeated_annotation_ids_are_renumbered(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][1]["id"] = 11
    result = _check(tmp_path, data)
    assert "used by an earlier annotation" in _only(result, "annotation-id", "repair").message
    assert [a["id"] for a in result.data["annotations"]] == [11, 33, 21, 22, 31, 32]


def test_one_image_id_for_two_files_is_refused(tmp_path):
    data = _good_dataset(tmp_path)
    data["images"][2]["id"] = 2
    result = _check(tmp_path, data)
    assert not result.ok
    problem = next(p for p in result.report.errors if p.kind == "image-record")
    assert "['2.png', '3.png']" in problem.message


def test_one_category_id_with_two_names_is_refused_and_cannot_be_skipped(tmp_path):
    data = _good_dataset(tmp_path)
    data["categories"].append({"id": 7, "name": "again"})
    result = _check(tmp_path, data, skip_invalid=True)
    assert not result.ok and result.data is None
    assert "'rect' and as 'again'" in _only(result, "category", "error").message


def test_missing_and_unreadable_image_files(tmp_path):
    data = _good_dataset(tmp_path)
    os.remove(tmp_path / "images" / "2.png")
    (tmp_path / "images" / "3.png").write_bytes(b"this is not an image")
    result = _check(tmp_path, data)
    messages = {p.where.split(" image id ")[-1]: p.message for p in result.report.errors}
    assert "does not exist" in messages["2"] and "unreadable" in messages["3"]
    assert result.counts.skippable_images == 2 and result.counts.skippable_annotations == 4


def test_truncated_image_is_found_by_its_missing_end_marker(tmp_path):
    data = _good_dataset(tmp_path)
    path = _image(tmp_path, "1.jpg", size=(W * 8, H * 8))
    path.write_bytes(path.read_bytes()[:-400])
    data["images"][0].update(file_name="1.jpg", width=W * 8, height=H * 8)
    assert "truncated" in _only(_check(tmp_path, data), "image-file", "error").message


def test_image_size_that_disagrees_with_the_record(tmp_path):
    data = _good_dataset(tmp_path)
    _image(tmp_path, "1.png", size=(W + 2, H))
    problem = _only(_check(tmp_path, data), "image-size", "error")
    assert f"is {W + 2}x{H}" in problem.message and f"says {W}x{H}" in problem.message


def test_image_size_follows_exif_rotation_like_detectron2(tmp_path):
    from detectron2.data.detection_utils import read_image

    path = _image(tmp_path, "rotated.jpg", size=(W, H), exif_orientation=6)  # 90 degrees
    assert read_image_size(str(path)) == (H, W)
    assert read_image(str(path)).shape[:2] == (W, H)  # Detectron2 sees height W, width H


def test_record_with_the_stored_size_of_an_exif_rotated_image_is_turned(tmp_path):
    data = _good_dataset(tmp_path)
    _image(tmp_path, "1.jpg", size=(W, H), exif_orientation=8)  # stored 40x30, displayed 30x40
    data["images"][0]["file_name"] = "1.jpg"
    result = _check(tmp_path, data)
    assert "EXIF orientation 8" in _only(result, "exif-rotated", "repair").message
    assert (result.data["images"][0]["width"], result.data["images"][0]["height"]) == (H, W)
    # Orientation 8 turns the stored image 90 degrees counter-clockwise: stored (x, y) -> (y, W - x).
    turned = result.data["annotations"][0]
    assert turned["segmentation"][0][:2] == [3.0, W - 2.0] and turned["bbox"] == [3.0, W - 12.0, 10.0, 10.0]


def test_size_missing_in_the_record_is_read_from_the_image(tmp_path):
    data = _good_dataset(tmp_path)
    del data["images"][1]["width"]
    result = _check(tmp_path, data)
    _only(result, "image-size-missing", "repair")
    assert result.data["images"][1]["width"] == W and result.counts.images_repaired == 1


def test_box_of_zero_width_is_recomputed_from_the_mask(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][4]["bbox"] = [2, 3, 0, 10]
    result = _check(tmp_path, data)
    assert "recomputed from the mask" in _only(result, "box-from-mask", "repair").repair
    assert result.data["annotations"][4]["bbox"] == [2.0, 3.0, 10.0, 10.0]


def test_box_of_zero_width_without_a_mask_is_dropped_as_detectron2_does(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][4]["bbox"] = [2, 3, 0, 10]
    result = _check(tmp_path, data, require_masks=False)
    assert "no mask to compute it from" in _only(result, "empty-box", "drop").message


def test_box_mostly_outside_is_trained_with_a_warning(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][1].update(bbox=[37, 5, 10, 10], segmentation=[_square(37, 5, 10)])
    result = _check(tmp_path, data)
    assert result.ok and {p.kind for p in result.report.problems} == {"mostly-outside"}
    assert not result.changed  # Detectron2 trains its in-image part; nothing to write


def test_polygons_past_the_border_and_self_crossing_are_trained_as_they_are(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["segmentation"] = [[30, 5, 41, 6, 40.5, 20, 31, 22]]  # 1 px past
    data["annotations"][1]["segmentation"] = [[20, 5, 28, 17, 28, 5, 20, 17]]  # a bow tie
    result = _check(tmp_path, data)
    assert result.ok and result.report.problems == [] and not result.changed


def test_empty_segmentation_is_dropped_with_masks_and_ignored_without(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["segmentation"] = []
    assert "'segmentation' is []" in _only(_check(tmp_path, data), "no-mask", "drop").message
    assert _check(tmp_path, data, require_masks=False).report.problems == []


def test_polygon_of_two_points_beside_a_valid_one_is_left_out(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["segmentation"].append([30, 20, 31, 21])
    result = _check(tmp_path, data)
    assert "polygon 1 of 2 has 2 distinct point(s)" in _only(result, "invalid-polygon", "repair").message
    assert result.data["annotations"][0]["segmentation"] == [[float(v) for v in _square(2, 3, 10)]]


def test_malformed_rle(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["segmentation"] = {"size": [H, W], "counts": [100, 50]}  # 150 != 1200 pixels
    data["annotations"][2]["segmentation"] = {"size": [H, W], "counts": "zz~"}  # not RLE characters
    problems = _check(tmp_path, data, mask_format="bitmask").report.problems
    assert [p.kind for p in problems] == ["rle", "rle"]
    assert "sum to 150" in problems[0].message and "1200" in problems[0].message
    assert "not an RLE character" in problems[1].message


def test_rle_of_trained_instances_needs_the_bitmask_format_but_crowd_rle_does_not(tmp_path):
    data = _good_dataset(tmp_path)
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    mask[5:20, 10:30] = 1
    rle = mask_util.encode(mask)
    data["annotations"][0].update(iscrowd=1, segmentation={"size": rle["size"], "counts": rle["counts"].decode()})
    assert _check(tmp_path, data, mask_format="polygon").report.problems == []
    data["annotations"][0]["iscrowd"] = 0
    problem = _only(_check(tmp_path, data, mask_format="polygon"), "mask-format", "error")
    assert "set INPUT.MASK_FORMAT bitmask" in problem.message


def test_iscrowd_2_is_a_crowd_with_a_warning(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][1]["iscrowd"] = 2
    assert "treats it as a crowd" in _only(_check(tmp_path, data), "iscrowd-value", "warning").message


def test_missing_area_of_an_evaluation_set_is_the_mask_area(tmp_path):
    data = _good_dataset(tmp_path)
    del data["annotations"][3]["area"]
    result = _check(tmp_path, data)
    _only(result, "area", "repair")
    assert result.data["annotations"][3]["area"] == 96.0
    assert _check(tmp_path, data, for_evaluation=False).report.problems == []


def test_annotation_id_0_is_renumbered_in_an_evaluation_set_only(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["id"] = 0
    assert "COCOeval" in _only(_check(tmp_path, data), "annotation-id", "repair").message
    assert _check(tmp_path, data, for_evaluation=False).report.problems == []


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    data = _good_dataset(tmp_path)
    data["annotations"][0]["bbox"] = [0, 0, -1, 5]
    data["annotations"][2]["category_id"] = 42
    data["annotations"][5]["segmentation"] = [[1, 1, 2, 2]]
    os.remove(tmp_path / "images" / "2.png")
    kinds = sorted(p.kind for p in _check(tmp_path, data).report.problems)
    assert kinds == ["box-from-mask", "image-file", "no-mask", "unknown-category"]


def test_skip_invalid_keeps_exactly_the_good_records_and_counts_add_up(tmp_path):
    from detectron2.data.datasets import load_coco_json

    data = _good_dataset(tmp_path, n_images=5)
    data["annotations"][0]["category_id"] = 5  # refused: annotation 11
    data["annotations"][3]["segmentation"] = [[20, 5, 28, 5, 24, 5]]  # no area: annotation 22 dropped
    os.remove(tmp_path / "images" / "3.png")  # refused: image 3 and its annotations 31, 32
    original = copy.deepcopy(data)

    refused = _check(tmp_path, data)
    assert not refused.ok and refused.data is None
    assert (refused.counts.skippable_annotations, refused.counts.skippable_images) == (3, 1)
    assert "add --skip-invalid: it drops 3 annotation(s) and 1 image(s)" in refused.report.format()

    result = _check(tmp_path, data, skip_invalid=True, dataset_name="mixed")
    assert result.ok, result.report.format()
    assert {img["id"] for img in result.data["images"]} == {1, 2, 4, 5}
    assert [a["id"] for a in result.data["annotations"]] == [12, 21, 41, 42, 51, 52]
    c = result.report.counts["mixed"]
    assert (c.annotations_in, c.annotations_kept, c.annotations_repaired, c.annotations_dropped) == (10, 6, 0, 4)
    assert c.dropped_by_kind == {"unknown-category": 1, "no-mask": 1, "with their image": 2}
    assert data == original  # the caller's data is not touched
    dicts = load_coco_json(_write(tmp_path, result.data, "cleaned.json"), str(tmp_path / "images"), dataset_name=None)
    assert sorted(d["image_id"] for d in dicts) == [1, 2, 4, 5] and sum(len(d["annotations"]) for d in dicts) == 6


def test_compressed_rle_strings_decode_to_the_masks_run_lengths():
    from gn_det.validation.geometry import rle_string_counts

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = np.asfortranarray((rng.random((h, w)) < rng.random()).astype(np.uint8))
        flat = mask.ravel(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate(([0], changes, [flat.size])))
        expected = ([0] if flat[0] else []) + runs.tolist()  # COCO's runs start with a 0-run
        assert rle_string_counts(mask_util.encode(mask)["counts"].decode()).tolist() == expected
