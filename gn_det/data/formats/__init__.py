"""Annotation formats people fine-tune from, imported as COCO: VIA json and labelme files.

``detect_format(path)`` says which of "coco", "via" or "labelme" a ``--dataset`` FILE is (a
folder is labelme files; "via3" for a VIA 3 project, which is refused with what to export); ``convert(path, image_root)`` converts VIA and labelme to a COCO dict
(with every record it could not convert listed); ``write_converted`` stores it where every
process of a run finds the same file.
"""

import hashlib
import json
import os
import re
import tempfile
from typing import Any, Optional, Tuple

from .common import DEFAULT_LABEL, SOURCES_KEY, CocoBuilder, ConversionProblem, Report
from .labelme import convert_labelme, is_labelme, labelme_files
from .via import convert_via, is_via

__all__ = [
    "FORMATS",
    "detect_format",
    "convert",
    "converted_json_path",
    "write_converted",
    "CocoBuilder",
    "ConversionProblem",
    "DEFAULT_LABEL",
    "SOURCES_KEY",
]

FORMATS = ("coco", "via", "labelme")
# A COCO json's first key is one of its top-level fields (exports order them differently); VIA's
# is a file key or "_via_settings", labelme's "version" / "flags" / "shapes". Reading the start
# tells a COCO-sized file from the others without parsing it twice.
_SNIFF_BYTES = 1 << 16
_COCO_KEYS = {"info", "licenses", "images", "annotations", "categories", "type"}
_FIRST_KEY = re.compile(rb'^\s*\{\s*"((?:[^"\\]|\\.)*)"\s*:')


def _load_json(path: str) -> Optional[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def detect_format(path: str) -> Tuple[str, Optional[Any]]:
    """``(format, parsed json or None)``. Anything not recognizably VIA or labelme is "coco",
    so that the COCO checks name what is wrong with it."""
    if os.path.isdir(path):
        return "labelme", None
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return "coco", None
    first = _FIRST_KEY.match(head.lstrip(b"\xef\xbb\xbf"))
    if first and first.group(1).decode("utf-8", "replace") in _COCO_KEYS:
        return "coco", None
    data = _load_json(path)
    if is_via(data):
        return "via", data
    if isinstance(data, dict) and {"project", "file", "metadata"} <= data.keys():
        return "via3", data
    if is_labelme(data):
        return "labelme", data
    return "coco", None


def default_rule(kind: str, where: str, message: str, repair: str = "") -> str:
    """The dataset rule's default outcome of a finding (gn_det/validation/policy.py)."""
    from ...validation.policy import outcome  # imported here: gn_det.validation imports gn_det.data

    return outcome(kind)


def convert(path: str, image_root: str, report: Optional[Report] = None, unlabeled_class: str = DEFAULT_LABEL,
            cache: str = "") -> Tuple[str, Optional[CocoBuilder]]:
    """``(format, builder)``: VIA / labelme converted (``builder.coco()``, ``builder.problems``);
    ``("coco", None)`` for a COCO json, which needs no conversion. ``report(kind, where,
    message, repair) -> outcome`` decides the importer's findings (default: the dataset rule's
    default outcome); ``cache`` is where embedded labelme images are written."""
    report = report or default_rule
    fmt, data = detect_format(path)
    if fmt == "via":
        return fmt, convert_via(path, data, image_root, report, unlabeled_class)
    if fmt == "via3":
        builder = CocoBuilder(f"VIA 3 project {path}", report)
        builder.finding(
            "json-structure",
            path,
            "a VIA 3 project file (keys 'project', 'file', 'metadata') is not read; export the "
            "annotations from VIA as COCO json, or use VIA 2 and its 'Export annotations (as json)'",
            file_level=True,
        )
        return fmt, builder
    if fmt == "labelme":
        files = labelme_files(path) if os.path.isdir(path) else [path]
        what = f"the labelme files in {path}" if os.path.isdir(path) else f"the labelme file {path}"
        builder = convert_labelme(files, image_root, f"converted by gn_det from {what}", report, unlabeled_class, cache)
        if not files:
            builder.finding("json-structure", path, "the folder holds no .json files", file_level=True)
        return fmt, builder
    return fmt, None


def converted_json_path(name: str, path: str, image_root: str, directory: str) -> str:
    """Where dataset ``name``'s converted json goes: the same path in every process of a run."""
    key = json.dumps([os.path.abspath(path), os.path.abspath(image_root)])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(name.rstrip("/\\")))[:80]
    return os.path.join(directory, f"{safe}-{digest}.json")


def write_converted(coco: dict, target: str) -> str:
    """Write ``coco`` to ``target`` atomically, unless it already holds exactly that."""
    text = json.dumps(coco)
    try:
        with open(target, encoding="utf-8") as f:
            if f.read() == text:
                return target
    except OSError:
        pass
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(target) or ".", prefix=".converted-", suffix=".partial"
    )
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, target)
    return target
