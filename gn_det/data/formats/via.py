"""VIA (VGG Image Annotator) 1.x / 2.x json to COCO instances.

Two layouts, as VIA exports them and as Detectron2's balloon tutorial reads them:

- region json (``Annotation > Export as json``): ``{key: {"filename", "size", "regions",
  "file_attributes"}}``;
- project json (``Project > Save``): the same records under ``"_via_img_metadata"``.

``regions`` is a list (VIA 2) or a dict ``{"0": region, ...}`` (VIA 1); a region is
``{"shape_attributes": {"name": polygon|rect|circle|ellipse, ...}, "region_attributes": {...}}``.
The label is a region attribute's value (``label``, ``class``, ``name``, ``category`` or
``type`` first, else the one value the attributes agree on); a region without one gets
DEFAULT_LABEL. VIA stores no image size ("size" is the file's byte count), so it is read from
each image's header.
"""

import math
import os
from typing import Any, Dict, Optional, Tuple

from PIL import UnidentifiedImageError

from ..image_size import read_image_size
from .common import DEFAULT_LABEL, CocoBuilder, ellipse_polygon, number_list, rectangle_polygon

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


def _shape_polygon(shape: Any) -> Tuple[Optional[list], str]:
    """A VIA shape_attributes as one COCO polygon, or ``(None, why)``."""
    if not isinstance(shape, dict) or "name" not in shape:
        return (
            None,
            "'shape_attributes' must be an object with a 'name' (polygon, rect, circle, ellipse)",
        )
    name = shape["name"]
    need = {
        "polygon": ("all_points_x", "all_points_y"),
        "rect": ("x", "y", "width", "height"),
        "circle": ("cx", "cy", "r"),
        "ellipse": ("cx", "cy", "rx", "ry"),
    }.get(name)
    if need is None:
        return None, (
            f"shape {name!r} encloses no area; instance masks need one of {list(_AREA_SHAPES)}"
        )
    missing = [k for k in need if k not in shape]
    if missing:
        return None, f"{name} shape_attributes is missing {missing}"
    if name == "polygon":
        xs, why = number_list(shape["all_points_x"], "all_points_x", 3)
        ys, why_y = number_list(shape["all_points_y"], "all_points_y", 3)
        if xs is None or ys is None:
            return None, why or why_y
        if len(xs) != len(ys):
            return None, f"all_points_x has {len(xs)} values but all_points_y has {len(ys)}"
        return [v for xy in zip(xs, ys) for v in xy], ""
    values, why = number_list([shape[k] for k in need], f"{name} {list(need)}")
    if values is None:
        return None, why
    if name == "rect":
        x, y, w, h = values
        if w <= 0 or h <= 0:
            return None, f"rect width and height must be > 0, got {w:g}, {h:g}"
        return rectangle_polygon(x, y, x + w, y + h), ""
    if name == "circle":
        cx, cy, r = values
        if r <= 0:
            return None, f"circle radius must be > 0, got {r:g}"
        return ellipse_polygon(cx, cy, r, r), ""
    cx, cy, rx, ry = values
    theta, why = number_list([shape.get("theta", 0.0)], "ellipse theta")
    if theta is None:
        return None, why
    if rx <= 0 or ry <= 0:
        return None, f"ellipse radii must be > 0, got {rx:g}, {ry:g}"
    return ellipse_polygon(cx, cy, rx, ry, math.degrees(theta[0])), ""  # VIA: radians


def convert_via(path: str, data: Any, image_root: str) -> CocoBuilder:
    """Convert a parsed VIA json (``data``, read from ``path``) whose images are in ``image_root``."""
    builder = CocoBuilder(f"converted by gn_det from the VIA json {path}")
    unlabeled = []
    for key, record in via_records(data).items():
        where = f"{path} [{key!r}]"
        if not isinstance(record, dict):
            builder.error("via-record", where, f"must be an object, got {type(record).__name__}")
            continue
        filename = record.get("filename")
        if not isinstance(filename, str) or not filename:
            builder.error(
                "via-record", where, f"'filename' must be a non-empty string, got {filename!r}"
            )
            continue
        regions = record.get("regions")
        if isinstance(regions, dict):  # VIA 1.x: {"0": region, "1": region}
            regions = [regions[k] for k in sorted(regions, key=lambda k: (len(str(k)), str(k)))]
        if not isinstance(regions, list):
            builder.error(
                "via-record",
                where,
                f"'regions' must be a list or an object, got {type(regions).__name__}",
            )
            continue
        image_path = os.path.join(image_root, filename)
        try:
            width, height = read_image_size(image_path)
        except FileNotFoundError:
            builder.error(
                "image-file",
                where,
                f"image file {image_path} does not exist (filename {filename!r} under {image_root})",
            )
            continue
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            builder.error(
                "image-file",
                where,
                f"image file {image_path} is unreadable ({type(e).__name__}: {e})",
            )
            continue
        image_id = builder.add_image(filename, width, height, f"{where} ({filename})")
        for i, region in enumerate(regions):
            region_where = f"{where} regions[{i}]"
            if not isinstance(region, dict) or "shape_attributes" not in region:
                builder.error(
                    "via-region", region_where, "a region must be an object with 'shape_attributes'"
                )
                continue
            polygon, why = _shape_polygon(region["shape_attributes"])
            if polygon is None:
                builder.error("via-region", region_where, why)
                continue
            label, why = region_label(region.get("region_attributes"))
            if why:
                builder.error("via-region", region_where, why)
                continue
            if label is None:
                unlabeled.append(region_where)
                label = DEFAULT_LABEL
            builder.add_instance(image_id, label, [polygon], region_where)
    if unlabeled:
        builder.warning(
            "unlabeled-region",
            path,
            f"{len(unlabeled)} region(s) have no label in their region_attributes (e.g. "
            f"{unlabeled[0]}); they form the class {DEFAULT_LABEL!r}",
        )
    return builder
