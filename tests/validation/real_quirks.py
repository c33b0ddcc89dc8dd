"""Fixture generators for the quirks found in real public datasets (issue 28, docs/datasets.md).

Each ``make_<quirk>(tmp_dir)`` writes a tiny dataset (a few small images, a few annotations)
that has the quirk exactly as the real file has it (same keys, same value shapes), and returns
``dict(format=..., json=..., image_dir=..., source=..., quirk=..., detectron2=..., opts=[...])``:

- ``format``: "coco", "via" or "labelme"; ``json``: the file (or, for labelme, the folder) that
  ``--dataset NAME JSON IMAGE_DIR`` takes; ``image_dir``: the image root.
- ``source``: the real dataset it comes from (docs/datasets.md); ``quirk``: one line.
- ``detectron2``: what Detectron2 alone did on the real dataset (its loader, DatasetMapper over
  every record, one training step; docs/results/2026-12-06_real_datasets.py).
- ``opts``: config overrides the case is about (e.g. MODEL.MASK_ON False), else [].

No data of those datasets is copied: the coordinates are made up, only the layout is theirs.
"""

import base64
import io
import json
import os
from typing import Dict, List

from PIL import Image

__all__ = [
    "QUIRKS",
    "make_via_degenerate_region",
    "make_via_unlabeled_regions_among_labelled",
    "make_via_self_touching_polygon",
    "make_coco_box_only_empty_segmentation",
    "make_coco_unused_category",
    "make_roboflow_supercategory_id0",
    "make_coco_tiny_polygon_empty_at_train_size",
    "make_via2_project_unlabelled",
    "make_via_spaces_and_non_ascii_label",
    "make_via2_project_named_like_export_with_palette_png",
    "make_labelme_v3_embedded_image_old_keys",
    "make_labelme_ignore_label_and_group_ids",
]

W, H = 64, 48


def _image(path: str, size=(W, H), color=(90, 120, 60)) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=90)


def _write(path: str, data) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    return path


def _result(fmt, json_path, image_dir, source, quirk, detectron2, opts=None) -> Dict:
    return dict(
        format=fmt,
        json=json_path,
        image_dir=image_dir,
        source=source,
        quirk=quirk,
        detectron2=detectron2,
        opts=list(opts or []),
    )


# ------------------------------------------------------------------------------------ VIA 1


def _via1_region(xs, ys, attributes) -> dict:
    return {
        "shape_attributes": {"name": "polygon", "all_points_x": list(xs), "all_points_y": list(ys)},
        "region_attributes": attributes,
    }


def _via1_file(folder: str, filename: str, regions: List[dict]) -> tuple:
    """One VIA 1 export entry (key = file name + byte size, regions as a {"0": ...} dict)."""
    path = os.path.join(folder, filename)
    _image(path)
    size = os.path.getsize(path)
    entry = {
        "fileref": "",
        "size": size,
        "filename": filename,
        "base64_img_data": "",
        "file_attributes": {},
        "regions": {str(i): r for i, r in enumerate(regions)},
    }
    return f"{filename}{size}", entry


def _rice_regions(label_key="class_id"):
    return [
        _via1_region([10, 20, 24, 12, 10], [8, 6, 18, 20, 8], {label_key: "brown_spot"}),
        _via1_region([30, 44, 40, 30], [10, 12, 26, 10], {label_key: "leaf_smut"}),
        _via1_region([40, 56, 52, 40], [30, 28, 40, 30], {label_key: "bacteria"}),
    ]


def make_via_degenerate_region(tmp_dir) -> Dict:
    """rice_leaf (tzelalouzeir/rice_leaf_diseases_ds train, VIA 1): one region of 627 is one
    point repeated four times, with an empty-string label
    (``"all_points_x": [313, 313, 313, 313], "all_points_y": [388, 388, 388, 388]``, ``"class_id": ""``):
    its box is 0 x 0."""
    folder = os.path.join(str(tmp_dir), "via_degenerate")
    regions = _rice_regions() + [_via1_region([33, 33, 33, 33], [38, 38, 38, 38], {"class_id": ""})]
    key, entry = _via1_file(folder, "Brown_spot1.jpg", regions)
    key2, entry2 = _via1_file(folder, "Leaf_smut2.JPG", _rice_regions())
    path = _write(os.path.join(folder, "via_region_data.json"), {key: entry, key2: entry2})
    return _result(
        "via", path, folder, "rice_leaf train",
        "a VIA polygon of 4 identical points (0x0 box) with label ''",
        "loads; DatasetMapper drops the 1 empty instance (filter_empty_instances); trains",
    )


def make_via_unlabeled_regions_among_labelled(tmp_dir) -> Dict:
    """rice_leaf (train, VIA 1): 625 regions labelled in ``region_attributes.class_id``, one
    region with ``"region_attributes": {}`` and one with ``{"class_id": ""}`` (in the real file
    that one is also the degenerate region; here it is a valid polygon, to separate the quirks)."""
    folder = os.path.join(str(tmp_dir), "via_unlabeled_among_labelled")
    extra = [
        _via1_region([4, 14, 12, 4], [30, 30, 44, 30], {}),
        _via1_region([50, 60, 58, 50], [4, 6, 16, 4], {"class_id": ""}),
    ]
    key, entry = _via1_file(folder, "Brown_spot39.jpg", _rice_regions() + extra)
    key2, entry2 = _via1_file(folder, "Bacterial_leaf_blight1.JPG", _rice_regions())
    path = _write(os.path.join(folder, "via_region_data.json"), {key: entry, key2: entry2})
    return _result(
        "via", path, folder, "rice_leaf train",
        "2 regions without a label ({} and '') among labelled ones",
        "Detectron2 has no VIA loader; the balloon-tutorial loader raises KeyError: 'class_id' on {}; "
        "converted with a default label, it trains with one more class",
    )


def make_via_self_touching_polygon(tmp_dir) -> Dict:
    """rice_leaf (train and val) and titanium: outlines that go back over themselves, e.g.
    rice_leaf's edge (295,202)-(295,205) followed by (295,205)-(295,204): a 1-px spike."""
    folder = os.path.join(str(tmp_dir), "via_self_touching")
    spike = _via1_region(
        [10, 30, 30, 30, 30, 10, 10], [10, 10, 20, 23, 22, 30, 10], {"class_id": "bacteria"}
    )
    key, entry = _via1_file(folder, "Bacterial_leaf_blight5.JPG", [spike] + _rice_regions()[1:])
    path = _write(os.path.join(folder, "via_region_data.json"), {key: entry})
    return _result(
        "via", path, folder, "rice_leaf train/val (12 + 2), titanium train (7)",
        "polygon that touches itself (a 1-px spike back along an edge)",
        "trains; pycocotools' fill is what is learned",
    )


# ------------------------------------------------------------------------------------ COCO


def _cvat_coco(images, annotations, categories) -> dict:
    return {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": categories,
        "images": images,
        "annotations": annotations,
    }


def _cvat_image(image_id, file_name, size=(W, H)):
    return {
        "id": image_id, "width": size[0], "height": size[1], "file_name": file_name,
        "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0,
    }


_FIRE_CATEGORIES = [
    {"id": 1, "name": "smoke", "supercategory": ""},
    {"id": 2, "name": "fire", "supercategory": ""},
    {"id": 3, "name": "wheelchair", "supercategory": ""},
    {"id": 4, "name": "person", "supercategory": ""},
]


def _cvat_box(ann_id, image_id, category_id, bbox, rotation=0.0):
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": [],
        "area": round(bbox[2] * bbox[3], 4), "bbox": bbox, "iscrowd": 0,
        "attributes": {"occluded": False, "rotation": rotation},
    }


def make_coco_box_only_empty_segmentation(tmp_dir) -> Dict:
    """fire_smoke (yomvol/fire-smoke-segmentation, CVAT 'COCO 1.0' export): boxes only, every
    annotation ``"segmentation": []`` plus CVAT's ``"attributes": {"occluded": false, "rotation": 0.0}``
    (one real box has rotation 359.9); ``file_name`` "train/00000.jpg" under the image root."""
    root = os.path.join(str(tmp_dir), "coco_box_only")
    images, annotations = [], []
    for i, name in enumerate(["00000.jpg", "000047.jpg"], start=1):
        _image(os.path.join(root, "images", "train", name))
        images.append(_cvat_image(i, f"train/{name}"))
    annotations.append(_cvat_box(1, 1, 2, [12.63, 7.44, 13.97, 9.56]))
    annotations.append(_cvat_box(2, 1, 1, [30.5, 4.0, 20.25, 18.5], rotation=359.9))
    annotations.append(_cvat_box(3, 2, 4, [5.0, 10.0, 10.0, 30.0]))
    path = _write(os.path.join(root, "annotations", "instances_default.json"), _cvat_coco(images, annotations, _FIRE_CATEGORIES))
    return _result(
        "coco", path, os.path.join(root, "images"), "fire_smoke train (6433 of 6433 annotations)",
        "box-only COCO: every segmentation is []",
        "MASK_ON True: loads, maps every record without gt_masks, the training step raises "
        "AttributeError: Cannot find field 'gt_masks'; MASK_ON False: trains",
        opts=["MODEL.MASK_ON", "False"],
    )


def make_coco_unused_category(tmp_dir) -> Dict:
    """fire_smoke (CVAT export): category 3 'wheelchair' is declared and used by no annotation
    (val also leaves 'scooter' unused); polygons here, so that only this quirk is present."""
    root = os.path.join(str(tmp_dir), "coco_unused_category")
    _image(os.path.join(root, "images", "1.jpg"))
    images = [_cvat_image(1, "1.jpg")]
    annotations = []
    for k, (cat, (x, y)) in enumerate([(1, (4, 4)), (2, (30, 8)), (4, (10, 26))], start=1):
        ann = _cvat_box(k, 1, cat, [x, y, 12, 12])
        ann["segmentation"] = [[x, y, x + 12, y, x + 12, y + 12, x, y + 12]]
        annotations.append(ann)
    path = _write(os.path.join(root, "annotations", "instances_default.json"), _cvat_coco(images, annotations, _FIRE_CATEGORIES))
    return _result(
        "coco", path, os.path.join(root, "images"), "fire_smoke train/val; car_damage (id 0)",
        "a category no annotation uses",
        "loads; the unused category is a class with no examples; trains",
    )


def _roboflow_coco(images, annotations) -> dict:
    names = ["airbag", "cizik", "kirik-kayip"]
    return {
        "info": {"year": "2023", "version": "1", "description": "Exported from roboflow.com", "contributor": "",
                 "url": "https://public.roboflow.com/object-detection/undefined", "date_created": "2023-10-19T08:34:02+00:00"},
        "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
        "categories": [{"id": 0, "name": "car", "supercategory": "none"}]
        + [{"id": i, "name": n, "supercategory": "car"} for i, n in enumerate(names, start=1)],
        "images": images,
        "annotations": annotations,
    }


def _roboflow_polygon(ann_id, image_id, category_id, x, y, w, h):
    ring = [x + 0.5, y, x + w, y + 0.25, x + w - 0.5, y + h, x, y + h - 0.5]
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id,
        "bbox": [x, y, round(w, 3), round(h, 3)], "area": round(w * h, 3),
        "segmentation": [ring + ring[:2]],  # Roboflow closes every ring: the last point is the first
        "iscrowd": 0,
    }


def _roboflow_image(root, image_id, stem, size=(W, H)):
    name = f"{stem}_jpg.rf.1a190bd221661327343932854738487f.jpg"
    _image(os.path.join(root, name), size)
    return {"id": image_id, "license": 1, "file_name": name, "height": size[1], "width": size[0],
            "date_captured": "2023-10-19T08:34:02+00:00"}


def make_roboflow_supercategory_id0(tmp_dir) -> Dict:
    """car_damage (Batikanyilmaz1/CarDamageDetection, Roboflow 'COCO Segmentation' export):
    category id 0 is the super-category ``{"id": 0, "name": "car", "supercategory": "none"}``,
    used by no annotation; image and annotation ids start at 0; bbox mixes ints and floats
    (``[179, 240, 182.739, 140.948]``); every polygon ring is closed."""
    root = os.path.join(str(tmp_dir), "roboflow_supercategory")
    images = [_roboflow_image(root, 0, "003349"), _roboflow_image(root, 1, "0926392594_14601")]
    annotations = [
        _roboflow_polygon(0, 0, 1, 4, 6, 20.739, 14.948),
        _roboflow_polygon(1, 0, 2, 30, 20, 18.5, 10.666),
        _roboflow_polygon(2, 1, 3, 10, 10, 30.25, 20.5),
    ]
    path = _write(os.path.join(root, "_annotations.coco.json"), _roboflow_coco(images, annotations))
    return _result(
        "coco", path, root, "car_damage train/valid/test",
        "Roboflow super-category as category id 0, unused; ids from 0",
        "loads ('Category ids in annotations are not in [1, #categories]! We'll apply a mapping'); "
        "class 0 'car' has no examples; trains",
    )


def make_coco_tiny_polygon_empty_at_train_size(tmp_dir) -> Dict:
    """car_damage (train 7 boxes < 4 px, e.g. bbox [370, 242, 1.665, 8.323], 5 points, in a
    640x640 image): resized to the 160-px training size its bitmask is empty, and Detectron2's
    mapper drops the instance (filter_empty_instances, by_mask). Size-dependent: at 800 px it stays."""
    root = os.path.join(str(tmp_dir), "coco_tiny_polygon")
    size = (640, 640)
    images = [_roboflow_image(root, 0, "1273262679_14152", size)]
    tiny = {
        "id": 1, "image_id": 0, "category_id": 2, "bbox": [370, 242, 1.665, 8.323], "area": 6.9, "iscrowd": 0,
        "segmentation": [[370.523, 244.245, 371.356, 250.349, 371.772, 242.026, 370.107, 242.026, 370.523, 244.245]],
    }
    annotations = [_roboflow_polygon(0, 0, 1, 100, 120, 200.5, 150.25), tiny]
    path = _write(os.path.join(root, "_annotations.coco.json"), _roboflow_coco(images, annotations))
    return _result(
        "coco", path, root, "car_damage train (2 dropped at 160 px) and test (1)",
        "a polygon of ~2x8 px that rasterizes to an empty mask at the training size",
        "loads; DatasetMapper drops the instance (empty mask after resize to 160 px); trains",
    )


# ------------------------------------------------------------------------------------ VIA 2


def make_via2_project_unlabelled(tmp_dir) -> Dict:
    """eye_pupil (cocobar/EyeIrPupilImgData, VIA 2): the project file ``train.json`` (keys
    ``_via_settings``, ``_via_img_metadata``, ``_via_attributes``, ``_via_data_format_version``,
    ``_via_image_id_list``), regions as a list, every ``region_attributes`` ``{}``; file names with
    parentheses, spaces and dots; one image in the folder that the project does not list."""
    folder = os.path.join(str(tmp_dir), "via2_project")
    names = [
        "Round(20220826-161535)Group(3)Row(2)_Exposure(155)_2022-08-26 16-15-38.618930.jpg",
        "Round(20220826-161535)Group(3)Row(3)_Exposure(155)_2022-08-26 16-15-38.909601.jpg",
    ]
    metadata = {}
    for k, name in enumerate(names):
        _image(os.path.join(folder, name))
        size = os.path.getsize(os.path.join(folder, name))
        regions = [
            {"shape_attributes": {"name": "polygon", "all_points_x": [6, 20, 24, 14, 6], "all_points_y": [20, 12, 22, 30, 20]}, "region_attributes": {}},
            {"shape_attributes": {"name": "polygon", "all_points_x": [36, 50, 56, 44, 36], "all_points_y": [20, 14, 24, 30, 20]}, "region_attributes": {}},
        ]
        metadata[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions, "file_attributes": {}}
    _image(os.path.join(folder, "Round(20220826-161535)Group(4)Row(1)_Exposure(141)_2022-08-26 16-15-39.330202.jpg"))
    project = {
        "_via_settings": {"ui": {"annotation_editor_height": 25}, "core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""}, "project": {"name": "train"}},
        "_via_img_metadata": metadata,
        "_via_attributes": {"region": {}, "file": {}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": list(metadata),
    }
    path = _write(os.path.join(folder, "train.json"), project)
    return _result(
        "via", path, folder, "eye_pupil train/val (project file and export)",
        "VIA 2 project file, no region has a label",
        "converted with one default class, trains",
    )


def make_via_spaces_and_non_ascii_label(tmp_dir) -> Dict:
    """titanium (satoru121/titanium_dataset, VIA 1): file names with spaces
    (``"baja 7000001000025.jpg"``) and one non-ASCII label ``"β matrix grain boundary"`` in
    ``region_attributes.name``; polygons closed (the last point repeats the first)."""
    folder = os.path.join(str(tmp_dir), "via_spaces_non_ascii")
    label = {"name": "β matrix grain boundary"}
    regions = [
        _via1_region([10, 24, 26, 12, 10], [8, 6, 20, 22, 8], label),
        _via1_region([34, 50, 52, 36, 34], [20, 22, 36, 38, 20], label),
    ]
    key, entry = _via1_file(folder, "baja 7000001000025.jpg", regions)
    key2, entry2 = _via1_file(folder, "baja 7000001000026.jpg", regions[:1])
    path = _write(os.path.join(folder, "via_region_data.json"), {key: entry, key2: entry2})
    return _result(
        "via", path, folder, "titanium train/val",
        "file names with spaces, a non-ASCII label",
        "loads (the user loader too), trains with the class 'β matrix grain boundary'",
    )


def make_via2_project_named_like_export_with_palette_png(tmp_dir) -> Dict:
    """car_truck (mursona/car-truck-detection ``cartruck/train``): a VIA 2 *project* file saved
    under the balloon tutorial's export name ``via_region_data.json`` (the export sits beside it as
    ``via_region_data_json.json``); the label is a dropdown attribute ``names`` ("Car"/"Truck");
    one of the 16 images is a palette PNG with a transparency entry (``10.png``, mode "P")."""
    folder = os.path.join(str(tmp_dir), "via2_project_palette")
    _image(os.path.join(folder, "1.jpg"))
    palette = Image.new("P", (W, H), 3)
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    palette.save(os.path.join(folder, "10.png"), transparency=0)
    metadata = {}
    for name, label in [("1.jpg", "Car"), ("10.png", "Truck")]:
        size = os.path.getsize(os.path.join(folder, name))
        region = {"shape_attributes": {"name": "polygon", "all_points_x": [8, 40, 44, 12], "all_points_y": [10, 8, 30, 34]},
                  "region_attributes": {"names": label}}
        metadata[f"{name}{size}"] = {"filename": name, "size": size, "regions": [region], "file_attributes": {}}
    project = {
        "_via_settings": {"core": {"buffer_size": 18, "filepath": {}, "default_filepath": ""}, "project": {"name": "via_region_data"}},
        "_via_img_metadata": metadata,
        "_via_attributes": {"region": {"names": {"type": "dropdown", "description": "", "options": {"Car": "", "Truck": ""}, "default_options": {}}}, "file": {}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": list(metadata),
    }
    path = _write(os.path.join(folder, "via_region_data.json"), project)
    return _result(
        "via", path, folder, "car_truck train/val",
        "a VIA 2 project file under the export's name; a palette PNG with transparency",
        "the balloon tutorial's loop over the file raises KeyError: 'filename' (on '_via_settings'); "
        "read from _via_img_metadata it trains (read_image converts the palette PNG to RGB)",
    )


# ---------------------------------------------------------------------------------- labelme


def _labelme_shape(label, points, shape_type="polygon", group_id=None, v3=False):
    if v3:  # labelme 3.x: per-shape colours, no group_id
        return {"label": label, "line_color": None, "fill_color": None, "points": points,
                "shape_type": shape_type, "flags": {}}
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


def make_labelme_v3_embedded_image_old_keys(tmp_dir) -> Dict:
    """nuts (Tony607/labelme2coco ``images/``, labelme 3.16.2): top-level ``lineColor`` and
    ``fillColor``, per-shape ``line_color``/``fill_color``, no ``group_id``, and the image embedded
    as base64 ``imageData`` (besides ``imagePath``, which is there too)."""
    folder = os.path.join(str(tmp_dir), "labelme_v3")
    for stem, label in [("0", "date"), ("1", "fig"), ("2", "hazelnut")]:
        image_path = os.path.join(folder, f"{stem}.jpg")
        _image(image_path)
        buffer = io.BytesIO()
        Image.open(image_path).save(buffer, format="JPEG")
        data = {
            "version": "3.16.2",
            "flags": {},
            "shapes": [
                _labelme_shape(label, [[6.0, 8.0], [22.0, 6.0], [26.0, 20.0], [10.0, 24.0]], v3=True),
                _labelme_shape("hazelnut", [[34.0, 20.0], [50.0, 22.0], [48.0, 38.0], [36.0, 36.0]], v3=True),
            ],
            "lineColor": [0, 255, 0, 128],
            "fillColor": [255, 0, 0, 128],
            "imagePath": f"{stem}.jpg",
            "imageData": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "imageHeight": H,
            "imageWidth": W,
        }
        _write(os.path.join(folder, f"{stem}.json"), data)
    return _result(
        "labelme", folder, folder, "nuts (Tony607/labelme2coco)",
        "labelme 3.16 keys (lineColor/fillColor, line_color/fill_color), imageData embedded",
        "the user loader reads it; trains",
    )


def make_labelme_ignore_label_and_group_ids(tmp_dir) -> Dict:
    """labelme's own example (wkentaro/labelme examples/instance_segmentation/data_annotated,
    labelme 4.0.0): shapes labelled ``__ignore__`` (labelme's convention for regions to leave out;
    its labelme2coco skips them) and one instance drawn as several polygons with the same label
    and ``group_id`` 0 (a sofa in 4 pieces, a person in 2)."""
    folder = os.path.join(str(tmp_dir), "labelme_ignore_groups")
    _image(os.path.join(folder, "2011_000006.jpg"))
    shapes = [
        _labelme_shape("person", [[4.0, 4.0], [14.0, 4.0], [14.0, 30.0], [4.0, 30.0]]),
        _labelme_shape("sofa", [[20.0, 20.0], [30.0, 20.0], [30.0, 30.0], [20.0, 30.0]], group_id=0),
        _labelme_shape("sofa", [[34.0, 20.0], [44.0, 20.0], [44.0, 30.0], [34.0, 30.0]], group_id=0),
        _labelme_shape("__ignore__", [[48.0, 4.0], [60.0, 4.0], [60.0, 16.0], [48.0, 16.0]]),
    ]
    data = {"version": "4.0.0", "flags": {}, "shapes": shapes, "imagePath": "2011_000006.jpg",
            "imageData": None, "imageHeight": H, "imageWidth": W}
    _write(os.path.join(folder, "2011_000006.json"), data)
    return _result(
        "labelme", folder, folder, "labelme_voc_instance (labelme's instance_segmentation example)",
        "'__ignore__' regions and group_id instances of several polygons",
        "Detectron2 has no labelme loader; a naive loader makes '__ignore__' a class and each "
        "group_id piece its own instance",
    )


QUIRKS = {
    name[len("make_"):]: globals()[name] for name in __all__ if name.startswith("make_")
}
