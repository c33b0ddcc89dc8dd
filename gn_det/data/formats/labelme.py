"""labelme json files (one per image) to COCO instances.

A labelme file is ``{"shapes": [{"label", "points", "shape_type", "group_id"}, ...],
"imagePath", "imageHeight", "imageWidth", ...}``. ``polygon`` (the default), ``rectangle``
(two corners) and ``circle`` (center, a point on the circle) enclose an area; shapes with the
same label and the same non-null ``group_id`` are one instance of several polygons (labelme's
way to draw an object split by an occluder). ``imagePath`` is relative to the json's folder
(labelme's convention), possibly with Windows separators; the image is looked for there, under
IMAGE_DIR with that relative path, and under IMAGE_DIR by its file name.
"""

import json
import math
import os
from typing import Any, List, Optional, Tuple

from .common import DEFAULT_LABEL, CocoBuilder, ellipse_polygon, number_list, rectangle_polygon

__all__ = ["is_labelme", "labelme_files", "convert_labelme"]


def is_labelme(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "imagePath" in data


def labelme_files(folder: str) -> List[str]:
    """Every ``*.json`` under ``folder`` (sorted, subfolders included)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(".json")]
    return found


def _find_image(
    json_file: str, image_path: str, image_root: str
) -> Tuple[Optional[str], List[str]]:
    relative = image_path.replace("\\", "/")
    candidates = [
        os.path.normpath(os.path.join(os.path.dirname(json_file), relative)),
        os.path.normpath(os.path.join(image_root, relative)),
        os.path.join(image_root, os.path.basename(relative)),
    ]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate, candidates
    return None, candidates


def _shape_polygon(shape: dict) -> Tuple[Optional[list], str]:
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in points
    ):
        return None, "'points' must be a list of [x, y] pairs"
    flat, why = number_list([v for p in points for v in p], "points")
    if flat is None:
        return None, why
    if kind == "polygon":
        if len(flat) < 6:
            return None, f"polygon has {len(flat) // 2} point(s); at least 3 are needed"
        return flat, ""
    if kind == "rectangle":
        if len(flat) != 4:
            return None, f"rectangle needs 2 points (two corners), got {len(flat) // 2}"
        return rectangle_polygon(*flat), ""
    if kind == "circle":
        if len(flat) != 4:
            return (
                None,
                f"circle needs 2 points (center, a point on the circle), got {len(flat) // 2}",
            )
        cx, cy, px, py = flat
        r = math.hypot(px - cx, py - cy)
        if r <= 0:
            return None, "circle has radius 0"
        return ellipse_polygon(cx, cy, r, r), ""
    return (
        None,
        f"shape_type {kind!r} encloses no area; instance masks need polygon, rectangle or circle",
    )


def convert_labelme(paths: List[str], image_root: str, description: str) -> CocoBuilder:
    """Convert labelme files (``paths``) whose images are found as the module says."""
    builder = CocoBuilder(description)
    unlabeled = []
    for json_file in paths:
        try:
            with open(json_file, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            builder.error("labelme-file", json_file, f"not a readable json file: {e}")
            continue
        if not is_labelme(data):
            keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
            message = f"not a labelme file: it needs 'shapes' (a list) and 'imagePath' (got {keys})"
            if len(paths) > 1:  # a folder: other json files (e.g. an exported COCO json) beside
                builder.warning("not-labelme-file", json_file, message + "; the file is not read")
            else:
                builder.error("labelme-file", json_file, message)
            continue
        image_path = data["imagePath"]
        if not isinstance(image_path, str) or not image_path:
            builder.error(
                "labelme-file",
                json_file,
                f"'imagePath' must be a non-empty string, got {image_path!r}",
            )
            continue
        found, tried = _find_image(json_file, image_path, image_root)
        if found is None:
            embedded = (
                " (the json embeds it as 'imageData': save the image beside the json)"
                if data.get("imageData")
                else ""
            )
            builder.error(
                "image-file",
                json_file,
                f"image {image_path!r} not found; looked for {tried}{embedded}",
            )
            continue
        sizes = (data.get("imageWidth"), data.get("imageHeight"))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
            builder.error(
                "labelme-file",
                json_file,
                f"'imageWidth' and 'imageHeight' must be positive integers, got {sizes}",
            )
            continue
        file_name = os.path.relpath(found, image_root)
        image_id = builder.add_image(file_name, sizes[0], sizes[1], f"{json_file} ({image_path})")
        groups = {}  # (label, group_id) -> index into instances of this image
        instances = []  # [label, polygons, where]
        for i, shape in enumerate(data["shapes"]):
            where = f"{json_file} shapes[{i}]"
            if not isinstance(shape, dict):
                builder.error(
                    "labelme-shape", where, f"must be an object, got {type(shape).__name__}"
                )
                continue
            polygon, why = _shape_polygon(shape)
            if polygon is None:
                builder.error("labelme-shape", where, why)
                continue
            label = shape.get("label")
            if not isinstance(label, str) or not label.strip():
                unlabeled.append(where)
                label = DEFAULT_LABEL
            label = label.strip()
            group = shape.get("group_id")
            if group is not None and (label, group) in groups:
                instances[groups[(label, group)]][1].append(polygon)
                continue
            if group is not None:
                groups[(label, group)] = len(instances)
            instances.append([label, [polygon], f"{where} (label {label!r})"])
        for label, polygons, where in instances:
            builder.add_instance(image_id, label, polygons, where)
    if unlabeled:
        builder.warning(
            "unlabeled-region",
            description,
            f"{len(unlabeled)} shape(s) have no label (e.g. {unlabeled[0]}); they form the class {DEFAULT_LABEL!r}",
        )
    return builder
