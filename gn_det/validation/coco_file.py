"""A COCO json file as a whole: read once, its structure, its categories and its image records.

Findings go through ``report(kind, where, message, repair) -> outcome`` (policy.py decides).
"""

import json
import os
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .geometry import number

__all__ = ["read_json", "check_categories", "check_image_records", "Finding"]

Finding = Callable[..., str]  # report(kind, where, message, repair="") -> outcome


def _decode_error_message(text: str, error: json.JSONDecodeError) -> str:
    # The parser stopped for lack of input: an unterminated string always runs to the end.
    ends_there = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
    return (
        f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno}, character "
        f"{error.pos} of {len(text)})"
        + ("; the text ends before the document does, so the file is probably truncated (an "
           "interrupted download or copy)" if ends_there else "")
    )


def read_json(path: str, report: Finding) -> Optional[dict]:
    """The parsed COCO dict, or None after reporting why the file cannot be used. The text is
    read once, as str (no second copy of its bytes), and dropped once parsed."""
    if not os.path.isfile(path):
        report("json-file", path, "file not found" if not os.path.exists(path) else "not a regular file")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        report("json-file", path, f"not UTF-8 text (byte {e.start}); a COCO json must be UTF-8")
        return None
    except OSError as e:
        report("json-file", path, f"cannot read the file: {e}")
        return None
    if not text.strip():
        report("json-file", path, "the file is empty")
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        report("json-syntax", path, _decode_error_message(text, e))
        return None
    del text
    if not isinstance(data, dict):
        report("json-structure", path, "the top level must be an object with 'images', 'annotations' and "
               f"'categories', got {type(data).__name__}")
        return None
    ok = True
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            got = "missing" if key not in data else f"a {type(data[key]).__name__}"
            report("json-structure", path, f"the top-level field {key!r} must be a list; it is {got}")
            ok = False
    return data if ok else None


def check_categories(categories: List[Any], where: str, report: Finding) -> Tuple[Optional[List[dict]], str]:
    """The categories as Detectron2 will use them (one record per id; numeric-string ids
    converted), or ``(None, why)`` when they cannot be used."""
    kept: Dict[int, dict] = {}
    usable = True
    for i, cat in enumerate(categories):
        here = f"{where} categories[{i}]"
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            report("category", here, f"must be an object with 'id' (int) and 'name' (str), got {cat!r}"[:300])
            usable = False
            continue
        cat_id, was_string = number(cat["id"])
        if cat_id is None or not cat_id.is_integer() or (not was_string and not isinstance(cat["id"], int)):
            report("category", here, f"category id must be an integer, got {cat['id']!r}")
            usable = False
            continue
        if was_string:
            if report("numeric-string", here, f"category id {cat['id']!r} is a string", "converted to a number") != "repair":
                usable = False
                continue
            cat["id"] = int(cat_id)
        if not isinstance(cat["name"], str) or not cat["name"]:
            report("category", here, f"category {cat['id']} needs a non-empty string 'name', got {cat['name']!r}")
            usable = False
            continue
        first = kept.get(cat["id"])
        if first is None:
            kept[cat["id"]] = cat
        elif first["name"] == cat["name"]:
            if report("duplicate-category", here, f"category {cat['id']} {cat['name']!r} is listed again "
                      "(Detectron2 would add a second class of that name that is never trained)",
                      "listed once") != "repair":
                usable = False
        else:
            report("category", here, f"category id {cat['id']} is listed as {first['name']!r} and as "
                   f"{cat['name']!r}; which class its annotations belong to is unknown")
            usable = False
    if not categories:
        report("category", where, "'categories' is empty; list at least one category")
        return None, "empty"
    return (sorted(kept.values(), key=lambda c: c["id"]) if usable else None), ""


def _size(value) -> Tuple[Optional[int], bool]:
    parsed, was_string = number(value)
    if parsed is None or not parsed.is_integer() or parsed <= 0:
        return None, False
    return int(parsed), was_string


def check_image_records(images: List[Any], where_of: Callable[[Any, int], str], report: Finding
                        ) -> Tuple[Dict[int, dict], Set[Any], Set[int], Set[int]]:
    """``(usable records by id, ids of refused records, ids whose size must come from the image
    file, ids of repaired records)``. Records with one id for different files are all refused; a record repeated for the
    same file is harmless (Detectron2 reads the file once, with every annotation of the id)."""
    by_id: Dict[int, dict] = {}
    refused: Set[Any] = set()
    size_from_file: Set[int] = set()
    repaired: Set[int] = set()
    files = defaultdict(set)
    for i, img in enumerate(images):
        if (type(img) is dict and type(img.get("id")) is int and type(img.get("file_name")) is str
                and img["file_name"] and type(img.get("width")) is int and type(img.get("height")) is int
                and img["width"] > 0 and img["height"] > 0):
            by_id.setdefault(img["id"], img)
            files[img["id"]].add(img["file_name"])
            continue
        if not isinstance(img, dict):
            report("image-record", where_of(None, i), f"must be an object, got {type(img).__name__}")
            refused.add(f"images[{i}]")
            continue
        image_id, was_string = number(img.get("id"))
        if image_id is None or not image_id.is_integer() or (not was_string and type(img.get("id")) is not int):
            report("image-record", where_of(img.get("id"), i), f"image record needs an integer 'id', got {img.get('id')!r}")
            refused.add(repr(img.get("id")))
            continue
        here = where_of(img["id"], i)
        if was_string and report("numeric-string", here, f"image id {img['id']!r} is a string",
                                 "converted to a number") != "repair":
            refused.add(img["id"])
            continue
        img["id"] = int(image_id)
        if was_string:
            repaired.add(img["id"])
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            report("image-record", here, f"image record needs a non-empty 'file_name', got {img.get('file_name')!r}")
            refused.add(img["id"])
            continue
        strings = []
        for key in ("width", "height"):
            value, was_string = _size(img.get(key))
            if value is None:
                size_from_file.add(img["id"])
            elif was_string:
                strings.append((key, value))
        if strings and img["id"] not in size_from_file:
            if report("numeric-string", here, f"width / height given as strings ({img['width']!r}, "
                      f"{img['height']!r})", "converted to numbers") != "repair":
                refused.add(img["id"])
                continue
            img.update(strings)
            repaired.add(img["id"])
        by_id.setdefault(img["id"], img)
        files[img["id"]].add(img["file_name"])
    for image_id, names in files.items():
        if len(names) > 1:
            report("image-record", where_of(image_id, None), f"image id {image_id} is used by records of "
                   f"{len(names)} different files {sorted(names)[:3]}; which file its annotations belong to is "
                   "unknown (Detectron2 would train them all on the last one)")
            refused.add(image_id)
            by_id.pop(image_id, None)
    return by_id, refused, size_from_file, repaired
