"""VIA (VGG Image Annotator) 1.x / 2.x json to COCO instances.

Two layouts, as VIA exports them and as Detectron2's balloon tutorial reads them:

- region json (``Annotation > Export as json``): ``{key: {"filename", "size", "regions",
  "file_attributes"}}``;
- project json (``Project > Save``): the same records under ``"_via_img_metadata"``.

``regions`` is a list (VIA 2) or a dict ``{"0": region, ...}`` (VIA 1); a region is
``{"shape_attributes": {"name": polygon|rect|circle|ellipse, ...}, "region_attributes": {...}}``.
The label is a region attribute's value (``label``, ``class``, ``name``, ``category`` or
``type`` first, else the one value the attributes agree on). VIA stores no image size ("size"
is the file's byte count), so it is read from each image's header.

A region without a label is left out when other regions have labels (``unlabeled-region``); when
no region has one, all of them form one class (``unlabeled_class``, "object" unless named). A
labelled polyline is refused (an open line is not an outline); a point, a 0 x 0 rect and other
degenerate shapes are converted as they are and dropped by the COCO checks, as Detectron2 drops
them.
"""

import math
import os
from typing import Any, Dict, Optional, Tuple

from ..image_size import read_image_size
from .common import DEFAULT_LABEL, CocoBuilder, Report, ellipse_polygon, number_list, polygon_coordinates, rectangle_polygon

__all__ = ["is_via", "via_records", "convert_via"]

_LABEL_KEYS = ("label", "class", "name", "category", "type")
_AREA_SHAPES = ("polygon", "rect", "circle", "ellipse")


def via_records(data: Any) -> Optional[Dict[str, Any]]:
    """The image records of a VIA project or region json, or None if ``data`` is neither."""
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        return data["_via_img_metadata"]
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(v, dict) and "filename" in v and "regions" in v for v in data.values())
    ):
        return data
    return None


def is_via(data: Any) -> bool:
    return via_records(data) is not None


def region_label(attributes: Any) -> Tuple[Optional[str], str]:
    """``(label, "")``, ``(None, "")`` when there is none, or ``(None, why)`` when ambiguous."""
    if not isinstance(attributes, dict):
        return None, ""
    values = {}
    for key, value in attributes.items():
        if isinstance(value, str) and value.strip():
            values[key] = value.strip()
        elif isinstance(value, dict):  # checkbox / dropdown attributes: {"option": true}
            chosen = [option for option, on in value.items() if on is True]
            if len(chosen) == 1:
                values[key] = chosen[0]
    for key in _LABEL_KEYS:
        if key in values:
            return values[key], ""
    distinct = set(values.values())
    if len(distinct) == 1:
        return distinct.pop(), ""
    if not distinct:
        return None, ""
    return None, (
        f"region attributes {values} give several labels; name the attribute that holds the "
        f"class one of {list(_LABEL_KEYS)}"
    )


def _shape_polygon(shape: Any, where: str, builder: CocoBuilder) -> Optional[list]:
    """A VIA shape_attributes as one COCO polygon (degenerate ones as they are), or None after
    reporting why not."""
    if not isinstance(shape, dict) or "name" not in shape:
        builder.finding("region", where, "'shape_attributes' must be an object with a 'name' (polygon, rect, "
                        "circle, ellipse)")
        return None
    name = shape["name"]
    need = {
        "polygon": ("all_points_x", "all_points_y"),
        "polyline": ("all_points_x", "all_points_y"),
        "rect": ("x", "y", "width", "height"),
        "circle": ("cx", "cy", "r"),
        "ellipse": ("cx", "cy", "rx", "ry"),
        "point": ("cx", "cy"),
    }.get(name)
    if need is None:
        builder.finding("region", where, f"shape {name!r} is not one VIA draws; instance masks need one of "
                        f"{list(_AREA_SHAPES)}")
        return None
    missing = [k for k in need if k not in shape]
    if missing:
        builder.finding("region", where, f"{name} shape_attributes is missing {missing}")
        return None
    if name in ("polygon", "polyline"):
        return polygon_coordinates(shape["all_points_x"], shape["all_points_y"], name, where, builder,
                                   ("all_points_x", "all_points_y"))
    values, why, strings = number_list([shape[k] for k in need] + [shape.get("theta", 0.0)], f"{name} {list(need)}")
    if values is None:
        builder.finding("region", where, why)
        return None
    if strings and builder.finding("numeric-string", where, f"{name} values are numbers written as strings",
                                   "converted to numbers") != "repair":
        return None
    if name == "rect":
        x, y, w, h = values[:4]
        return rectangle_polygon(x, y, x + w, y + h)
    if name == "point":  # no area: the COCO checks drop it, as Detectron2 drops polygons of < 3 points
        return values[:2]
    if name == "circle":
        cx, cy, r = values[:3]
        return ellipse_polygon(cx, cy, r, r)
    cx, cy, rx, ry, theta = values
    return ellipse_polygon(cx, cy, rx, ry, math.degrees(theta))  # VIA: radians


def convert_via(path: str, data: Any, image_root: str, report: Report, unlabeled_class: str = DEFAULT_LABEL) -> CocoBuilder:
    """Convert a parsed VIA json (``data``, read from ``path``) whose images are in ``image_root``."""
    builder = CocoBuilder(f"converted by gn_det from the VIA json {path}", report, unlabeled_class)
    for key, record in via_records(data).items():
        where = f"{path} [{key!r}]"
        builder.images_in += 1
        if not isinstance(record, dict):
            builder.finding("image-record", where, f"must be an object, got {type(record).__name__}")
            continue
        filename = record.get("filename")
        if not isinstance(filename, str) or not filename:
            builder.finding("image-record", where, f"'filename' must be a non-empty string, got {filename!r}")
            continue
        regions = record.get("regions")
        if isinstance(regions, dict):  # VIA 1.x: {"0": region, "1": region}
            regions = [regions[k] for k in sorted(regions, key=lambda k: (len(str(k)), str(k)))]
        if not isinstance(regions, list):
            builder.finding("image-record", where, f"'regions' must be a list or an object, got {type(regions).__name__}")
            continue
        builder.records_in += len(regions)
        image_path = os.path.join(image_root, filename)
        try:
            width, height = read_image_size(image_path)
        except FileNotFoundError:
            builder.finding("image-file", where, f"image file {image_path} does not exist (filename {filename!r} "
                            f"under {image_root}); its {len(regions)} region(s) cannot be used")
            continue
        except (OSError, ValueError, SyntaxError) as e:
            builder.finding("image-file", where, f"image file {image_path} is unreadable ({type(e).__name__}: {e})")
            continue
        image_id = builder.add_image(filename, width, height, f"{where} ({filename})")
        for i, region in enumerate(regions):
            region_where = f"{where} regions[{i}]"
            if not isinstance(region, dict) or "shape_attributes" not in region:
                builder.finding("region", region_where, "a region must be an object with 'shape_attributes'")
                continue
            label, why = region_label(region.get("region_attributes"))
            if why:
                builder.finding("region", region_where, why)
                continue
            shape = region["shape_attributes"]
            if isinstance(shape, dict) and shape.get("name") == "polyline" and label is not None:
                builder.finding("region", region_where, f"a labelled polyline ({label!r}) is an open line, not an "
                                "outline: closing it into a polygon may not be what was drawn; redraw it as a polygon")
                continue
            polygon = _shape_polygon(shape, region_where, builder)
            if polygon is not None:
                builder.add_instance(image_id, label, [polygon], region_where, open_shape=shape.get("name") == "polyline")
    return builder
