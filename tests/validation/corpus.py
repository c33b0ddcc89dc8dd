"""The mutation corpus: small valid datasets in COCO, VIA 1, VIA 2 and labelme, and the real-world
quirks and breakages applied to them one kind at a time (issue 28).

Not a test module: ``tests/validation/test_corpus.py`` runs every mutation through the
differential harness (``differential.py``). ``write(kind, root)`` writes the dataset of one
mutation under ``root`` and returns ``(path, image_root, mask_format)``.

Every base dataset has 3 images of 64 x 48 px and 2 instances per image (a square 'cat' and a
rectangle 'dog'), so a mutation changes one record among several, as in a real dataset.
"""

import base64
import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

__all__ = ["KINDS", "Kind", "write", "W", "H"]

W, H = 64, 48
EXIF_ORIENTATION = 0x0112


def _pixels(i: int) -> np.ndarray:
    rng = np.random.RandomState(i)
    image = np.full((H, W, 3), (40 * i, 90, 160 - 30 * i), np.uint8)
    image += rng.randint(0, 20, (H, W, 3)).astype(np.uint8)
    image[8:24, 8:24] = (220, 40, 40)
    image[20:40, 30:56] = (40, 220, 40)
    return image


def _save(path: str, i: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(_pixels(i)).save(path)


def _square(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def _rect(x, y, w, h):
    return [x, y, x + w, y, x + w, y + h, x, y + h]


# -- the base datasets -------------------------------------------------------------------------


def coco_base(root: str) -> dict:
    images, annotations = [], []
    for i in (1, 2, 3):
        _save(os.path.join(root, "images", f"{i}.png"), i)
        images.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
        for k, (cat, poly) in enumerate(((1, _square(8, 8, 16)), (2, _rect(30, 20, 26, 20)))):
            xs, ys = poly[0::2], poly[1::2]
            annotations.append(
                {
                    "id": 10 * i + k,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    "segmentation": [poly],
                    "area": float((max(xs) - min(xs)) * (max(ys) - min(ys))),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def _via_polygon(poly, **attributes):
    return {
        "shape_attributes": {"name": "polygon", "all_points_x": poly[0::2], "all_points_y": poly[1::2]},
        "region_attributes": attributes,
    }


def via_base(root: str, version: int) -> dict:
    """VIA 2's region json (regions a list, attribute 'label'), or VIA 1's (regions a dict keyed
    "0", "1", ..., attribute 'name'), as the balloon tutorial's via_region_data.json."""
    key = "label" if version == 2 else "name"
    data = {}
    for i in (1, 2, 3):
        _save(os.path.join(root, "images", f"{i}.jpg"), i)
        regions = [
            _via_polygon(_square(8, 8, 16), **{key: "cat"}),
            _via_polygon(_rect(30, 20, 26, 20), **{key: "dog"}),
        ]
        if version == 1:
            regions = {str(k): r for k, r in enumerate(regions)}
        size = os.path.getsize(os.path.join(root, "images", f"{i}.jpg"))
        data[f"{i}.jpg{size}"] = {"filename": f"{i}.jpg", "size": size, "regions": regions, "file_attributes": {}}
    return data


def _labelme_shape(label, poly, shape_type="polygon", group_id=None):
    return {
        "label": label,
        "points": [[poly[k], poly[k + 1]] for k in range(0, len(poly), 2)],
        "group_id": group_id,
        "shape_type": shape_type,
        "flags": {},
    }


def labelme_base(root: str) -> Dict[str, dict]:
    """One labelme file per image, the image beside it (labelme's own layout)."""
    files = {}
    for i in (1, 2, 3):
        _save(os.path.join(root, "labelme", f"{i}.jpg"), i)
        files[f"{i}.json"] = {
            "version": "5.2.1",
            "flags": {},
            "shapes": [
                _labelme_shape("cat", _square(8, 8, 16)),
                _labelme_shape("dog", _rect(30, 20, 26, 20)),
            ],
            "imagePath": f"{i}.jpg",
            "imageData": None,
            "imageHeight": H,
            "imageWidth": W,
        }
    return files


# -- image quirks (applied to the first image of any format) -------------------------------------


def _image_path(root: str, fmt: str, data) -> str:
    if fmt == "coco":
        return os.path.join(root, "images", data["images"][0]["file_name"])
    if fmt == "labelme":
        return os.path.join(root, "labelme", "1.jpg")
    return os.path.join(root, "images", "1.jpg")


def _rewrite_image(root, fmt, data, convert: Callable[[Image.Image, str], None]):
    path = _image_path(root, fmt, data)
    convert(Image.fromarray(_pixels(1)), path)


def _exif_rotated(image: Image.Image, path: str):
    """A camera JPEG: pixels stored sideways plus EXIF orientation 6 (turn 90 degrees
    clockwise to display); its displayed image is the dataset's image."""
    stored = image.transpose(Image.ROTATE_90)  # undone by orientation 6
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    stored.save(path, format="JPEG", exif=exif, quality=95)


# -- the mutations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    fmt: str  # "coco", "via1", "via2", "labelme"
    mutate: Callable  # (data, root) -> None; edits the base data in place
    what: str
    mask_format: str = "polygon"  # INPUT.MASK_FORMAT; "none": MODEL.MASK_ON False (boxes only)
    make: Callable = None  # (root) -> real_quirks' dict: a whole dataset, instead of a base + mutate


def _ann(data, i=0):
    return data["annotations"][i]


def _set(d, **kw):
    d.update(kw)


def _stored_size_exif(data, root):
    path = _image_path(root, "coco", data)
    image = Image.fromarray(_pixels(1))
    # Annotations drawn on the stored (sideways) pixels: the json has the stored size, W x H
    # swapped, and the annotations of image 1 in the stored frame.
    stored = image.transpose(Image.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    jpg = os.path.splitext(path)[0] + ".jpg"
    stored.save(jpg, format="JPEG", exif=exif, quality=95)
    data["images"][0].update(file_name=os.path.basename(jpg), width=H, height=W)
    for ann in data["annotations"]:
        if ann["image_id"] == 1:  # displayed (x, y) -> stored (y, W - x) for ROTATE_90 storage
            for poly in ann["segmentation"]:
                xs, ys = poly[0::2], poly[1::2]
                poly[0::2], poly[1::2] = ys, [W - x for x in xs]
            xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
            ann["bbox"] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _displayed_size_exif(data, root):
    path = _image_path(root, "coco", data)
    jpg = os.path.splitext(path)[0] + ".jpg"
    _exif_rotated(Image.fromarray(_pixels(1)), jpg)
    data["images"][0]["file_name"] = os.path.basename(jpg)


def _rename_image(data, root, new_name, json_name=None):
    old = os.path.join(root, "images", data["images"][0]["file_name"])
    target = os.path.join(root, "images", new_name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(old, target)
    data["images"][0]["file_name"] = json_name or new_name


def _rle(counts_as_list: bool, size=(H, W)):
    def mutate(data, root):
        mask = np.zeros(size, np.uint8, order="F")
        mask[8:24, 8:24] = 1
        rle = mask_util.encode(mask)
        counts = rle["counts"].decode()
        if counts_as_list:
            flat = mask.ravel(order="F")
            runs, value, n = [], 0, 0
            for v in flat:
                if v != value:
                    runs.append(n)
                    value, n = v, 0
                n += 1
            runs.append(n)
            counts = runs
        _ann(data)["segmentation"] = {"size": list(size), "counts": counts}
    return mutate


def _truncate(data, root):
    path = _image_path(root, "coco", data)
    jpg = os.path.splitext(path)[0] + ".jpg"
    Image.fromarray(_pixels(1)).save(jpg, quality=95)
    with open(jpg, "rb") as f:
        content = f.read()
    with open(jpg, "wb") as f:
        f.write(content[: len(content) // 2])
    os.remove(path)
    data["images"][0]["file_name"] = os.path.basename(jpg)


def _convert_image(mode: str, ext: str = ".png"):
    def mutate(data, root):
        path = _image_path(root, "coco", data)
        image = Image.fromarray(_pixels(1))
        target = os.path.splitext(path)[0] + ext
        if mode == "I;16":
            gray = np.asarray(image.convert("L")).astype(np.uint16) * 257
            Image.fromarray(gray).save(target)
        else:
            image.convert(mode).save(target)
        if target != path:
            os.remove(path)
        data["images"][0]["file_name"] = os.path.basename(target)
    return mutate


def _all_annotations(fn):
    def mutate(data, root):
        for ann in data["annotations"]:
            fn(ann)
    return mutate


COCO_KINDS: List[Kind] = [
    Kind("clean", "coco", lambda d, r: None, "the valid base dataset"),
    # numbers
    Kind("bbox-wh-strings", "coco", _all_annotations(lambda a: a.__setitem__("bbox", a["bbox"][:2] + [str(float(v)) for v in a["bbox"][2:]])),
         "every box's width and height a numeric string (a labeling service's COCO export)"),
    Kind("polygon-strings", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[str(v) for v in _ann(d)["segmentation"][0]]]),
         "polygon coordinates as numeric strings"),
    Kind("id-strings", "coco", lambda d, r: _set(_ann(d), image_id=str(_ann(d)["image_id"]), category_id=str(_ann(d)["category_id"])),
         "an annotation's image_id and category_id as numeric strings"),
    Kind("size-strings", "coco", lambda d, r: _set(d["images"][0], width=str(W), height=str(H)), "an image's width and height as strings"),
    Kind("bbox-nan", "coco", lambda d, r: _ann(d)["bbox"].__setitem__(2, float("nan")), "a box width NaN"),
    Kind("bbox-inf", "coco", lambda d, r: _ann(d)["bbox"].__setitem__(2, float("inf")), "a box width infinite"),
    Kind("polygon-nan", "coco", lambda d, r: _ann(d)["segmentation"][0].__setitem__(2, float("nan")), "a polygon coordinate NaN"),
    Kind("bbox-negative-size", "coco", lambda d, r: _ann(d).__setitem__("bbox", [24, 24, -16, -16]), "a box [x1, y1, -w, -h] (corner and negative size)"),
    Kind("bbox-zero-size", "coco", lambda d, r: _ann(d)["bbox"].__setitem__(2, 0), "a box of width 0 with a valid polygon"),
    Kind("bbox-missing", "coco", lambda d, r: _ann(d).pop("bbox"), "an annotation without 'bbox' (it has a polygon)"),
    Kind("bbox-empty", "coco", lambda d, r: _ann(d).__setitem__("bbox", []), "'bbox': []"),
    Kind("bbox-huge", "coco", lambda d, r: _ann(d).__setitem__("bbox", [8, 8, 1e6, 1e6]), "a box of 1e6 px (wrong units)"),
    Kind("degenerate-instance", "coco", lambda d, r: _set(_ann(d), bbox=[8, 8, 0, 0], segmentation=[[8, 8, 8, 8, 8, 8, 8, 8]]),
         "a 0 x 0 box whose polygon is one point repeated"),
    # image sizes
    Kind("size-zero", "coco", lambda d, r: _set(d["images"][0], width=0, height=0), "an image record with width and height 0"),
    Kind("size-missing", "coco", lambda d, r: (d["images"][0].pop("width"), d["images"][0].pop("height")), "an image record without width and height"),
    Kind("size-wrong", "coco", lambda d, r: _set(d["images"][0], width=2 * W, height=2 * H), "an image record whose size is twice the file's"),
    # geometry against the image
    Kind("box-past-border", "coco", lambda d, r: _set(_ann(d), bbox=[50, 8, 16, 16], segmentation=[_square(50, 8, 16)]),
         "an instance 2 px past the right border"),
    Kind("box-mostly-outside", "coco", lambda d, r: _set(_ann(d), bbox=[56, 8, 40, 16], segmentation=[_rect(56, 8, 40, 16)]),
         "an instance of which 20% lies inside the image"),
    Kind("box-outside", "coco", lambda d, r: _set(_ann(d), bbox=[100, 8, 16, 16], segmentation=[_square(100, 8, 16)]),
         "an instance wholly outside the image"),
    Kind("polygon-outside-box-inside", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [_square(100, 8, 16)]),
         "a box inside the image, its polygon wholly outside"),
    # polygons
    Kind("polygon-collinear", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[8, 8, 16, 16, 24, 24, 12, 12]]),
         "a polygon whose points lie on one line (its only polygon)"),
    Kind("polygon-repeated-points", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[8, 8, 8, 8, 24, 8, 24, 8, 24, 24, 8, 24, 8, 8]]),
         "a valid polygon with repeated and closing points"),
    Kind("polygon-two-distinct-points", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[8, 8, 24, 24, 8, 8, 24, 24]]),
         "a polygon of 4 points, 2 of them distinct"),
    Kind("polygon-self-crossing", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[8, 8, 24, 24, 24, 8, 8, 24]]),
         "a bow-tie polygon"),
    Kind("polygon-2-points", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[8, 8, 24, 24]]), "a polygon of 2 points"),
    Kind("polygon-odd-length", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[8, 8, 24, 8, 24, 24, 8]]), "a polygon of 7 numbers"),
    Kind("polygon-one-bad-of-two", "coco", lambda d, r: _ann(d)["segmentation"].append([30, 30, 31, 31]),
         "an instance of two polygons, one of them 2 points"),
    Kind("polygon-point-pairs", "coco", lambda d, r: _ann(d).__setitem__("segmentation", [[[8, 8], [24, 8], [24, 24], [8, 24]]]),
         "a polygon as [[x, y], ...] pairs"),
    Kind("segmentation-flat", "coco", lambda d, r: _ann(d).__setitem__("segmentation", _square(8, 8, 16)),
         "segmentation a flat [x1, y1, ...] list instead of a list of polygons"),
    Kind("segmentation-empty", "coco", lambda d, r: _ann(d).__setitem__("segmentation", []), "'segmentation': []"),
    Kind("segmentation-missing", "coco", lambda d, r: _ann(d).pop("segmentation"), "an annotation without 'segmentation'"),
    # RLE and crowds
    Kind("rle-counts-list", "coco", _rle(True), "an uncompressed RLE (counts a list)", "bitmask"),
    Kind("rle-counts-string", "coco", _rle(False), "a compressed RLE (counts a string)", "bitmask"),
    Kind("rle-polygon-format", "coco", _rle(False), "a compressed RLE with INPUT.MASK_FORMAT polygon"),
    Kind("rle-wrong-size", "coco", _rle(False, size=(H // 2, W // 2)), "an RLE of another size than its image", "bitmask"),
    Kind("rle-malformed", "coco", lambda d, r: _ann(d).__setitem__("segmentation", {"size": [H, W], "counts": [100, 50]}),
         "an RLE whose runs do not cover the image", "bitmask"),
    Kind("iscrowd-bool", "coco", _all_annotations(lambda a: a.__setitem__("iscrowd", False)), "iscrowd false (a boolean)"),
    Kind("iscrowd-string", "coco", _all_annotations(lambda a: a.__setitem__("iscrowd", "0")), "iscrowd \"0\" (a string)"),
    Kind("iscrowd-null", "coco", lambda d, r: _ann(d).__setitem__("iscrowd", None), "iscrowd null"),
    Kind("iscrowd-2", "coco", lambda d, r: _ann(d).__setitem__("iscrowd", 2), "iscrowd 2"),
    Kind("iscrowd-missing", "coco", _all_annotations(lambda a: a.pop("iscrowd")), "no 'iscrowd' key"),
    Kind("crowd-polygon", "coco", lambda d, r: _ann(d).__setitem__("iscrowd", 1), "a crowd region given as a polygon"),
    Kind("ignore-flag", "coco", lambda d, r: _ann(d).__setitem__("ignore", 1), "'ignore': 1 (CityPersons-style ignore regions)"),
    # ids
    Kind("annotation-id-missing", "coco", lambda d, r: _ann(d).pop("id"), "an annotation without 'id'"),
    Kind("annotation-id-duplicate", "coco", lambda d, r: _ann(d, 1).__setitem__("id", _ann(d)["id"]), "two annotations with one id"),
    Kind("annotation-id-zero", "coco", lambda d, r: _ann(d).__setitem__("id", 0), "annotation id 0 (Roboflow numbers from 0)"),
    Kind("ids-64-bit", "coco", lambda d, r: [a.__setitem__("id", 2**40 + a["id"]) for a in d["annotations"]], "annotation ids above 2**32"),
    Kind("image-id-duplicate", "coco", lambda d, r: d["images"][1].__setitem__("id", 1), "two image records (two files) with one id"),
    Kind("image-id-unknown", "coco", lambda d, r: _ann(d).__setitem__("image_id", 99), "an annotation of an image id that is not in 'images'"),
    Kind("category-0-based", "coco", lambda d, r: ([c.__setitem__("id", c["id"] - 1) for c in d["categories"]],
                                                   [a.__setitem__("category_id", a["category_id"] - 1) for a in d["annotations"]]),
         "category ids 0 and 1"),
    Kind("category-sparse", "coco", lambda d, r: ([c.__setitem__("id", c["id"] * 7) for c in d["categories"]],
                                                  [a.__setitem__("category_id", a["category_id"] * 7) for a in d["annotations"]]),
         "category ids 7 and 14"),
    Kind("category-unknown", "coco", lambda d, r: _ann(d).__setitem__("category_id", 5), "an annotation of a category id not in 'categories'"),
    Kind("category-unused", "coco", lambda d, r: d["categories"].append({"id": 3, "name": "bird"}), "a category no annotation uses"),
    Kind("category-placeholder", "coco", lambda d, r: d["categories"].insert(0, {"id": 0, "name": "cat", "supercategory": "none"}),
         "Roboflow's super-category: id 0 named like a real class, unused"),
    Kind("category-duplicate-id", "coco", lambda d, r: d["categories"].append({"id": 2, "name": "dog"}), "the same category listed twice"),
    # image files
    Kind("image-missing", "coco", lambda d, r: os.remove(_image_path(r, "coco", d)), "an image file that is not there"),
    Kind("image-truncated", "coco", _truncate, "a JPEG cut in half (an interrupted download)"),
    Kind("image-not-an-image", "coco", lambda d, r: open(_image_path(r, "coco", d), "wb").write(b"<html>404</html>"), "an HTML error page saved as .png"),
    Kind("image-grayscale", "coco", _convert_image("L"), "a grayscale PNG"),
    Kind("image-rgba", "coco", _convert_image("RGBA"), "an RGBA PNG"),
    Kind("image-palette", "coco", _convert_image("P"), "a palette PNG"),
    Kind("image-16-bit", "coco", _convert_image("I;16"), "a 16-bit grayscale PNG"),
    Kind("image-cmyk", "coco", _convert_image("CMYK", ".jpg"), "a CMYK JPEG"),
    Kind("image-exif-stored-size", "coco", _stored_size_exif,
         "an EXIF-rotated JPEG (orientation 6); json size and annotations in its stored frame"),
    Kind("image-exif-displayed-size", "coco", _displayed_size_exif,
         "an EXIF-rotated JPEG (orientation 6); json size and annotations as displayed"),
    Kind("file-name-spaces", "coco", lambda d, r: _rename_image(d, r, "my image 1.png"), "a file name with spaces"),
    Kind("file-name-non-ascii", "coco", lambda d, r: _rename_image(d, r, "chat_été_猫.png"), "a non-ASCII file name"),
    Kind("file-name-windows", "coco", lambda d, r: _rename_image(d, r, "sub/1.png", "sub\\1.png"), "a file name with Windows separators"),
    Kind("no-usable-annotation", "coco", _all_annotations(lambda a: a.__setitem__("bbox", [8, 8, 0, 0]) or a.__setitem__("segmentation", [[8, 8, 9, 9]])),
         "every annotation degenerate"),
    Kind("annotation-not-an-object", "coco", lambda d, r: d["annotations"].append("oops"), "an annotation that is a string"),
    Kind("box-only-export", "coco", _all_annotations(lambda a: a.__setitem__("segmentation", [])),
         "every 'segmentation' [] (CVAT's COCO export of rectangles) with masks trained"),
    Kind("box-only-export-boxes", "coco", _all_annotations(lambda a: a.__setitem__("segmentation", [])),
         "the same export with MODEL.MASK_ON False", "none"),
]


def _via_regions(data) -> List[list]:
    out = []
    for record in data.values():
        regions = record["regions"]
        out.append(list(regions.values()) if isinstance(regions, dict) else regions)
    return out


def _via_mutation(fn):
    """fn(first image's regions (list, mutable view), data, root)."""
    def mutate(data, root):
        record = next(iter(data.values()))
        regions = record["regions"]
        as_list = list(regions.values()) if isinstance(regions, dict) else regions
        fn(as_list, data, root)
        if isinstance(regions, dict):
            record["regions"] = {str(k): r for k, r in enumerate(as_list)}
    return mutate


def _label_key(region):
    return next(iter(region["region_attributes"]), "label")


def _via_kinds(fmt: str) -> List[Kind]:
    def unlabeled(regions, data, root):
        regions.append(_via_polygon(_square(40, 4, 8)))

    def all_unlabeled(data, root):
        for regions in _via_regions(data):
            for region in regions:
                region["region_attributes"] = {}

    def polyline(labelled):
        def fn(regions, data, root):
            attrs = {_label_key(regions[0]): "cat"} if labelled else {}
            regions.append({"shape_attributes": {"name": "polyline", "all_points_x": [2, 20, 40], "all_points_y": [44, 40, 44]},
                            "region_attributes": attrs})
        return fn

    def degenerate(regions, data, root):
        regions.append({"shape_attributes": {"name": "rect", "x": 40, "y": 4, "width": 0, "height": 0},
                        "region_attributes": dict(regions[0]["region_attributes"])})

    def point(regions, data, root):
        regions.append({"shape_attributes": {"name": "point", "cx": 40, "cy": 4}, "region_attributes": dict(regions[0]["region_attributes"])})

    def several_labels(regions, data, root):
        regions[0]["region_attributes"] = {"species": "cat", "colour": "red"}

    def shapes(regions, data, root):
        key = _label_key(regions[0])
        regions[1] = {"shape_attributes": {"name": "rect", "x": 30, "y": 20, "width": 26, "height": 20}, "region_attributes": {key: "dog"}}
        regions.append({"shape_attributes": {"name": "circle", "cx": 48, "cy": 10, "r": 6}, "region_attributes": {key: "cat"}})
        regions.append({"shape_attributes": {"name": "ellipse", "cx": 14, "cy": 36, "rx": 8, "ry": 4, "theta": 0.5}, "region_attributes": {key: "dog"}})

    def strings(regions, data, root):
        shape = regions[0]["shape_attributes"]
        shape["all_points_x"] = [str(v) for v in shape["all_points_x"]]

    def missing_image(data, root):
        os.remove(os.path.join(root, "images", "1.jpg"))

    def non_ascii(data, root):
        record = next(iter(data.values()))
        os.rename(os.path.join(root, "images", "1.jpg"), os.path.join(root, "images", "chat été.jpg"))
        record["filename"] = "chat été.jpg"

    def no_regions(data, root):
        next(iter(data.values()))["regions"] = {} if fmt == "via1" else []

    return [
        Kind("clean", fmt, lambda d, r: None, f"the valid base dataset ({fmt})"),
        Kind("region-unlabeled", fmt, _via_mutation(unlabeled), "one region without a label among labelled ones"),
        Kind("all-regions-unlabeled", fmt, all_unlabeled, "no region has a label (the balloon tutorial's data)"),
        Kind("region-several-labels", fmt, _via_mutation(several_labels), "a region whose attributes give two labels"),
        Kind("polyline-labelled", fmt, _via_mutation(polyline(True)), "a labelled open polyline"),
        Kind("polyline-unlabeled", fmt, _via_mutation(polyline(False)), "an unlabelled polyline beside labelled polygons"),
        Kind("region-degenerate", fmt, _via_mutation(degenerate), "one 0 x 0 rect among the regions"),
        Kind("region-point", fmt, _via_mutation(point), "a point region"),
        Kind("rect-circle-ellipse", fmt, _via_mutation(shapes), "rect, circle and ellipse regions"),
        Kind("points-as-strings", fmt, _via_mutation(strings), "all_points_x as numeric strings"),
        Kind("image-missing", fmt, missing_image, "a listed image file that is not there"),
        Kind("file-name-non-ascii", fmt, non_ascii, "a non-ASCII file name with a space"),
        Kind("image-without-regions", fmt, no_regions, "an image with no regions"),
    ]


def _labelme_mutation(fn):
    def mutate(files, root):
        fn(files["1.json"], files, root)
    return mutate


def _labelme_kinds() -> List[Kind]:
    def image_data_only(f, files, root):
        path = os.path.join(root, "labelme", "1.jpg")
        with open(path, "rb") as image:
            f["imageData"] = base64.b64encode(image.read()).decode()
        os.remove(path)

    def old_version(f, files, root):
        f["version"] = "3.16.7"
        f.pop("imageHeight"), f.pop("imageWidth")
        f["lineColor"], f["fillColor"] = [0, 255, 0, 128], [255, 0, 0, 128]
        for shape in f["shapes"]:
            shape.pop("shape_type"), shape.pop("group_id"), shape.pop("flags")
            shape["line_color"] = shape["fill_color"] = None

    def group(f, files, root):
        f["shapes"][0]["group_id"] = 1
        f["shapes"].append(dict(_labelme_shape("cat", _square(40, 2, 8)), group_id=1))

    def unlabeled(f, files, root):
        f["shapes"].append(_labelme_shape("", _square(40, 2, 8)))

    def windows_path(f, files, root):
        os.makedirs(os.path.join(root, "labelme", "img"))
        os.rename(os.path.join(root, "labelme", "1.jpg"), os.path.join(root, "labelme", "img", "1.jpg"))
        f["imagePath"] = "img\\1.jpg"

    def line_and_point(f, files, root):
        f["shapes"].append(_labelme_shape("cat", [2, 44, 40, 40], "line"))
        f["shapes"].append(_labelme_shape("cat", [40, 4], "point"))

    def linestrip(f, files, root):
        f["shapes"].append(_labelme_shape("cat", [2, 44, 20, 40, 40, 44], "linestrip"))

    def rectangle_circle(f, files, root):
        f["shapes"][1] = _labelme_shape("dog", [30, 20, 56, 40], "rectangle")
        f["shapes"].append(_labelme_shape("cat", [48, 10, 54, 10], "circle"))

    def wrong_size(f, files, root):
        f["imageWidth"], f["imageHeight"] = 2 * W, 2 * H

    def ignore_label(f, files, root):
        f["shapes"].append(_labelme_shape("__ignore__", _square(40, 2, 8), group_id=0))
        f["shapes"].append(_labelme_shape("__ignore__", _square(50, 30, 8), group_id=0))

    def coco_json_beside(f, files, root):
        files["trainval.json"] = {"images": [], "annotations": [], "categories": []}

    return [
        Kind("clean", "labelme", lambda d, r: None, "the valid base dataset (labelme)"),
        Kind("image-data-only", "labelme", _labelme_mutation(image_data_only), "the image only embedded as imageData"),
        Kind("old-version", "labelme", _labelme_mutation(old_version),
             "a labelme 3 file: no shape_type, group_id, imageWidth/imageHeight; lineColor/fillColor keys"),
        Kind("group-id", "labelme", _labelme_mutation(group), "two polygons of one object (same label and group_id)"),
        Kind("shape-unlabeled", "labelme", _labelme_mutation(unlabeled), "a shape with an empty label"),
        Kind("image-path-windows", "labelme", _labelme_mutation(windows_path), "imagePath with Windows separators"),
        Kind("line-and-point", "labelme", _labelme_mutation(line_and_point), "a line and a point shape"),
        Kind("linestrip", "labelme", _labelme_mutation(linestrip), "a labelled linestrip (open polyline)"),
        Kind("rectangle-circle", "labelme", _labelme_mutation(rectangle_circle), "rectangle and circle shapes"),
        Kind("size-wrong", "labelme", _labelme_mutation(wrong_size), "imageWidth/imageHeight twice the image's"),
        Kind("coco-json-beside", "labelme", _labelme_mutation(coco_json_beside), "a COCO json in the labelme folder"),
        Kind("ignore-label", "labelme", _labelme_mutation(ignore_label),
             "two shapes labelled __ignore__ (labelme's name for regions to leave out), one group_id"),
    ]


def _real_kinds() -> List[Kind]:
    """The quirks of real public datasets (tests/validation/real_quirks.py, docs/datasets.md)."""
    from real_quirks import QUIRKS

    kinds = []
    for name, make in sorted(QUIRKS.items()):
        source = make.__doc__.split(" (")[0].strip()
        kinds.append(Kind(f"real-{name}", "real", None, f"{source}: {name.replace('_', ' ')}", make=make))
    return kinds


KINDS: Dict[Tuple[str, str], Kind] = {
    (k.fmt, k.name): k for k in COCO_KINDS + _via_kinds("via1") + _via_kinds("via2") + _labelme_kinds() + _real_kinds()
}
FORMATS = ("coco", "via1", "via2", "labelme", "real")


def write(fmt: str, name: str, root: str) -> Tuple[str, str, str]:
    """Write mutation ``name`` of format ``fmt`` under ``root``: ``(path, image_root, mask_format)``;
    real quirks: ``fmt`` "real", the format is detected from the file."""
    kind = KINDS[(fmt, name)]
    os.makedirs(root, exist_ok=True)
    if kind.make is not None:
        made = kind.make(root)
        opts = made["opts"]
        masks_off = any(k == "MODEL.MASK_ON" and v == "False" for k, v in zip(opts[0::2], opts[1::2]))
        return made["json"], made["image_dir"], "none" if masks_off else "polygon"
    if fmt == "coco":
        data = coco_base(root)
        kind.mutate(data, root)
        path = os.path.join(root, "annotations.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        return path, os.path.join(root, "images"), kind.mask_format
    if fmt in ("via1", "via2"):
        data = via_base(root, int(fmt[-1]))
        kind.mutate(data, root)
        path = os.path.join(root, "via_region_data.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        return path, os.path.join(root, "images"), kind.mask_format
    files = labelme_base(root)
    kind.mutate(files, root)
    for name_, content in files.items():
        with open(os.path.join(root, "labelme", name_), "w", encoding="utf-8") as f:
            json.dump(content, f, ensure_ascii=False)
    folder = os.path.join(root, "labelme")
    return folder, folder, kind.mask_format
