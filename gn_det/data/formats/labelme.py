"""labelme json files (one per image) to COCO instances.

A labelme file is ``{"shapes": [{"label", "points", "shape_type", "group_id"}, ...],
"imagePath", "imageHeight", "imageWidth", "imageData", ...}``. ``polygon`` (the default: labelme
3 files have no ``shape_type``), ``rectangle`` (two corners) and ``circle`` (center, a point on
the circle) enclose an area; ``line`` and ``point`` do not and are converted as they are (the
COCO checks drop them, as Detectron2 drops polygons of < 3 points); a labelled ``linestrip`` is
an open line and is refused. Shapes with the same label and the same non-null ``group_id`` are
one instance of several polygons (labelme's way to draw an object split by an occluder).
``imagePath`` is relative to the json's folder (labelme's convention), possibly with Windows
separators; the image is looked for there, under IMAGE_DIR with that relative path, and under
IMAGE_DIR by its file name. A file whose image exists only as ``imageData`` has it written to
gn_det's cache. Sizes missing in old files are read from the image; a size that disagrees with
the image is left for the COCO checks to refuse. Shapes labelled ``__ignore__`` or
``_background_`` (labelme's reserved names) are left out, counted, never a class.
"""

import base64
import hashlib
import io
import json
import os
from typing import Any, List, Optional, Tuple

from PIL import Image

from ..image_size import read_image_size
from .common import DEFAULT_LABEL, CocoBuilder, Report, ellipse_polygon, polygon_coordinates, rectangle_polygon

__all__ = ["is_labelme", "labelme_files", "convert_labelme"]

_OPEN_SHAPES = ("linestrip",)
# labelme's own converters (labelme2voc, labelme2coco) read these from labels.txt and skip them.
_RESERVED_LABELS = ("__ignore__", "_background_")


def is_labelme(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "imagePath" in data


def labelme_files(folder: str) -> List[str]:
    """Every ``*.json`` under ``folder`` (sorted, subfolders included)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(".json")]
    return found


def _find_image(json_file: str, image_path: str, image_root: str) -> Tuple[Optional[str], List[str]]:
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


def _embedded_image(data: dict, json_file: str, cache: str) -> Optional[str]:
    """Write the file's ``imageData`` (base64) to ``cache`` once; its path, or None if it does
    not decode as an image."""
    try:
        content = base64.b64decode(data["imageData"], validate=False)
        with Image.open(io.BytesIO(content)) as image:
            extension = {"JPEG": ".jpg", "PNG": ".png"}.get(image.format or "", ".png")
    except (ValueError, OSError, TypeError):
        return None
    digest = hashlib.sha1(content).hexdigest()[:16]
    name = os.path.splitext(os.path.basename(data["imagePath"].replace("\\", "/")))[0] or "image"
    target = os.path.join(cache, f"{name}-{digest}{extension}")
    if not os.path.isfile(target):
        os.makedirs(cache, exist_ok=True)
        partial = target + f".{os.getpid()}.partial"
        with open(partial, "wb") as f:
            f.write(content)
        os.replace(partial, target)
    return target


def _instance_count(shapes) -> int:
    """How many instances a file's shapes are (shapes of one label and group_id are one)."""
    groups, single = set(), 0
    for shape in shapes if isinstance(shapes, list) else []:
        group = shape.get("group_id") if isinstance(shape, dict) else None
        label = shape.get("label") if isinstance(shape, dict) else None
        if group is not None and isinstance(label, str) and label.strip() and label.strip() not in _RESERVED_LABELS:
            groups.add((label.strip(), group))
        else:
            single += 1
    return len(groups) + single


def _shape_polygon(shape: dict, where: str, builder: CocoBuilder) -> Optional[list]:
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points")
    if not isinstance(points, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
        builder.finding("region", where, "'points' must be a list of [x, y] pairs")
        return None
    flat = polygon_coordinates([p[0] for p in points], [p[1] for p in points], f"{kind} points", where, builder)
    if flat is None:
        return None
    if kind in ("polygon", "line", "point", "linestrip"):
        return flat
    if kind == "rectangle" and len(flat) == 4:
        return rectangle_polygon(*flat)
    if kind == "circle" and len(flat) == 4:
        cx, cy, px, py = flat
        r = ((px - cx) ** 2 + (py - cy) ** 2) ** 0.5
        return ellipse_polygon(cx, cy, r, r)
    if kind in ("rectangle", "circle"):
        builder.finding("region", where, f"a {kind} needs 2 points, got {len(flat) // 2}")
        return None
    builder.finding("region", where, f"shape_type {kind!r} is not read; instance masks need polygon, rectangle "
                    "or circle")
    return None


def convert_labelme(paths: List[str], image_root: str, description: str, report: Report,
                    unlabeled_class: str = DEFAULT_LABEL, cache: str = "") -> CocoBuilder:
    """Convert labelme files (``paths``) whose images are found as the module says; embedded
    images are written under ``cache``."""
    builder = CocoBuilder(description, report, unlabeled_class)
    for json_file in paths:
        try:
            with open(json_file, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            builder.finding("json-syntax" if len(paths) == 1 else "image-record", json_file,
                            f"not a readable json file: {e}", file_level=len(paths) == 1)
            continue
        if not is_labelme(data):
            keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
            message = f"not a labelme file: it needs 'shapes' (a list) and 'imagePath' (got {keys})"
            if len(paths) > 1:  # a folder: other json files (e.g. an exported COCO json) beside
                builder.finding("not-labelme-file", json_file, message + "; the file is not read")
            else:
                builder.finding("json-structure", json_file, message, file_level=True)
            continue
        builder.images_in += 1
        records = _instance_count(data["shapes"])
        image_path = data["imagePath"]
        if not isinstance(image_path, str) or not image_path:
            builder.finding("image-record", json_file, f"'imagePath' must be a non-empty string, got {image_path!r}")
            builder.records_in += records
            continue
        found, tried = _find_image(json_file, image_path, image_root)
        if found is None and data.get("imageData"):
            embedded = _embedded_image(data, json_file, cache) if cache else None
            if embedded is not None and builder.finding(
                    "image-data", json_file, f"image {image_path!r} is not on disk, only embedded as 'imageData'",
                    f"written to {embedded}") == "repair":
                found = embedded
            elif embedded is None:
                builder.finding("image-file", json_file, f"image {image_path!r} not found (looked for {tried}) and "
                                "its 'imageData' is not an image")
        if found is None:
            if not data.get("imageData"):
                builder.finding("image-file", json_file, f"image {image_path!r} not found; looked for {tried}")
            builder.records_in += records
            continue
        width, height = data.get("imageWidth"), data.get("imageHeight")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            width, height = read_image_size(found)  # labelme 3 files have no size
        # The COCO file_name: relative to the image root, or absolute when the image is elsewhere
        # (beside the json, or in the cache): os.path.join(image_root, absolute) is the absolute path.
        relative = os.path.relpath(found, image_root)
        file_name = found if relative.startswith("..") else relative
        image_id = builder.add_image(file_name, width, height, f"{json_file} ({image_path})")
        groups = {}  # (label, group_id) -> index into instances of this image
        instances = []  # [label, polygons, where, open]
        for i, shape in enumerate(data["shapes"]):
            where = f"{json_file} shapes[{i}]"
            if not isinstance(shape, dict):
                builder.finding("region", where, f"must be an object, got {type(shape).__name__}")
                continue
            label = shape.get("label")
            label = label.strip() if isinstance(label, str) and label.strip() else None
            if label in _RESERVED_LABELS:
                builder.finding("ignored-label", where, f"label {label!r} is labelme's name for a region to leave out")
                builder.ignored += 1
                continue
            kind = shape.get("shape_type") or "polygon"
            if kind in _OPEN_SHAPES and label is not None:
                builder.finding("region", where, f"a labelled {kind} ({label!r}) is an open line, not an outline: "
                                "closing it into a polygon may not be what was drawn; redraw it as a polygon")
                continue
            polygon = _shape_polygon(shape, where, builder)
            if polygon is None:
                continue
            group = shape.get("group_id")
            if group is not None and label is not None and (label, group) in groups:
                instances[groups[(label, group)]][1].append(polygon)
                continue
            if group is not None and label is not None:
                groups[(label, group)] = len(instances)
            instances.append([label, [polygon], f"{where} (label {label!r})", kind in _OPEN_SHAPES])
        builder.records_in += records
        for label, polygons, where, open_shape in instances:
            builder.add_instance(image_id, label, polygons, where, open_shape=open_shape)
    return builder
