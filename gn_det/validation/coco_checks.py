"""COCO-format instance json checks, every record, before training reads any of it.

Each problem names the file, the image id and the annotation id. Every check is an error or a
warning (policy.py: warnings are reported, some repaired, and the run goes on; ``strict`` makes
them errors). Errors come in two kinds:

- file-level (not JSON, truncated, missing top-level fields, bad or duplicate categories): the
  dataset cannot be used; validation fails even with ``skip_invalid``;
- record-level (one image or annotation): with ``skip_invalid`` the record is dropped (an image
  with all of its annotations), every drop is listed in the report and counted; otherwise
  validation fails.

``iscrowd`` follows COCO: 0 or 1; crowd regions are usually RLE but may be polygons (pycocotools
accepts both for any annotation); they are kept (Detectron2 ignores them in training, COCOeval
treats them as "ignore" regions).
"""

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

from PIL import UnidentifiedImageError

from ..data.formats.common import SOURCES_KEY, WARNINGS_KEY
from ..data.image_size import read_image_size
from .annotation_checks import annotation_findings
from .dataset_warnings import _hashable, _is_int, dataset_warnings
from .policy import BORDER_TOLERANCE_PX, WARNINGS
from .report import ValidationReport

__all__ = ["CocoCheckResult", "check_coco_json", "read_image_size", "BOX_TOLERANCE_PX"]

# Slack for boxes/polygons at the image border: annotation tools round coordinates.
BOX_TOLERANCE_PX = BORDER_TOLERANCE_PX


@dataclass
class CocoCheckResult:
    """What ``check_coco_json`` found.

    Attributes:
        report: all problems (record-level ones marked ``dropped`` under skip_invalid).
        data: the json content with dropped records removed (None when the file is unusable).
        data: the json content with dropped records removed and repairs applied (None when
            the file is unusable).
        dropped_image_ids / dropped_annotation_ids: what skip_invalid removed.
        repaired_annotation_ids: annotations changed by a repair (policy.py).
    """

    report: ValidationReport
    data: Optional[dict] = None
    dropped_image_ids: Set[Any] = field(default_factory=set)
    dropped_annotation_ids: Set[Any] = field(default_factory=set)
    repaired_annotation_ids: Set[Any] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.report.ok


def _missing_image_hint(file_name: str, image_root: str) -> str:
    """Why a listed image may be missing, when the file is visibly elsewhere."""
    base = os.path.basename(file_name.replace("\\", "/"))
    hint = "; 'file_name' uses Windows separators (\\)" if "\\" in file_name else ""
    if base != file_name and os.path.isfile(os.path.join(image_root, base)):
        hint += f"; a file {base!r} is in the image root itself"
    return hint


def _decode_error_message(text: str, error: json.JSONDecodeError) -> str:
    # The parser stopped for lack of input: an unterminated string always runs to the end.
    ends_there = error.pos >= len(text.rstrip()) or error.msg.startswith("Unterminated string")
    return (
        f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno}, character "
        f"{error.pos} of {len(text)})"
        + (
            "; the text ends before the document does, so the file is probably truncated (an interrupted download or copy)"
            if ends_there
            else ""
        )
    )


class _CocoChecker:
    def __init__(
        self,
        json_file: str,
        image_root: str,
        name: str,
        skip_invalid: bool,
        require_masks: bool,
        for_evaluation: bool,
        check_images: bool,
        num_threads: int,
        strict: bool = False,
    ):
        self.json_file = json_file
        self.image_root = image_root
        self.name = name
        self.skip_invalid = skip_invalid
        self.require_masks = require_masks
        self.for_evaluation = for_evaluation
        self.check_images = check_images
        self.num_threads = num_threads
        self.strict = strict
        self.report = ValidationReport()
        self.sources: Dict[str, Dict[str, str]] = {"images": {}, "annotations": {}}
        self.repaired: Set[Any] = set()  # annotation ids
        self.bad_images: Set[Any] = set()
        self.bad_annotations: Set[int] = set()  # positions in the annotations list

    # -- helpers ------------------------------------------------------------------------------

    def file_problem(self, kind: str, message: str, where: str = "") -> None:
        dataset = f"dataset {self.name!r}: " if self.name != self.json_file else ""
        self.report.add(kind, f"{dataset}{self.json_file}{where}", message)

    def image_where(self, image_id) -> str:
        where = f"{self.json_file} image id {image_id!r}"
        source = self.sources["images"].get(str(image_id))
        return f"{source} ({where})" if source else where

    def annotation_where(self, position: int, ann: dict) -> str:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        where = f"{self.json_file} image id {image_id!r} annotation id {ann_id!r} (annotations[{position}])"
        source = self.sources["annotations"].get(str(ann_id))
        return f"{source} ({where})" if source else where

    def image_problem(self, kind: str, image_id, message: str) -> None:
        self.report.add(kind, self.image_where(image_id), message, dropped=self.skip_invalid)

    def annotation_problem(self, kind: str, position: int, ann: dict, message: str) -> None:
        self.report.add(
            kind, self.annotation_where(position, ann), message, dropped=self.skip_invalid
        )
        self.bad_annotations.add(position)

    # Warnings (policy.py): reported and the run goes on; under --strict, errors of the same kind.
    _STRICT = " (a warning; an error under --strict)"

    def file_warning(self, kind: str, message: str, where: str = "") -> None:
        assert kind in WARNINGS, kind
        if self.strict:
            self.file_problem(kind, message + self._STRICT, where)
        else:
            self.report.add(kind, f"{self.json_file}{where}", message, level="warning")

    def image_warning(self, kind: str, image_id, message: str) -> None:
        assert kind in WARNINGS, kind
        if self.strict:
            self.image_problem(kind, image_id, message + self._STRICT)
            self.bad_images.add(image_id)
        else:
            self.report.add(kind, self.image_where(image_id), message, level="warning")

    # -- the checks ---------------------------------------------------------------------------

    def load(self) -> Optional[dict]:
        if not os.path.isfile(self.json_file):
            self.file_problem(
                "json-file",
                "file not found" if not os.path.exists(self.json_file) else "not a regular file",
            )
            return None
        try:
            with open(self.json_file, "rb") as f:
                raw = f.read()
        except OSError as e:
            self.file_problem("json-file", f"cannot read the file: {e}")
            return None
        if not raw.strip():
            self.file_problem("json-file", "the file is empty")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.file_problem(
                "json-file", f"not UTF-8 text (byte {e.start}); a COCO json must be UTF-8"
            )
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            self.file_problem("json-syntax", _decode_error_message(text, e))
            return None
        if not isinstance(data, dict):
            self.file_problem(
                "json-structure",
                f"the top level must be an object with 'images', 'annotations' and 'categories', got {type(data).__name__}",
            )
            return None
        ok = True
        for key in ("images", "annotations", "categories"):
            if key not in data:
                self.file_problem(
                    "missing-field", f"missing the required top-level field {key!r} (a list)"
                )
                ok = False
            elif not isinstance(data[key], list):
                self.file_problem(
                    "json-structure",
                    f"top-level field {key!r} must be a list, got {type(data[key]).__name__}",
                )
                ok = False
        return data if ok else None

    def check_categories(self, categories: List[Any]) -> Set[Any]:
        ids: Counter = Counter()
        for i, cat in enumerate(categories):
            where = f" categories[{i}]"
            if not isinstance(cat, dict):
                self.file_problem(
                    "category",
                    f"must be an object with 'id' and 'name', got {type(cat).__name__}",
                    where,
                )
                continue
            missing = [k for k in ("id", "name") if k not in cat]
            if missing:
                self.file_problem(
                    "missing-field",
                    f"category is missing {missing} (needs 'id' (int) and 'name' (str))",
                    where,
                )
                continue
            if not _is_int(cat["id"]):
                self.file_problem(
                    "category", f"category id must be an integer, got {cat['id']!r}", where
                )
                continue
            if not isinstance(cat["name"], str) or not cat["name"]:
                self.file_problem(
                    "category",
                    f"category {cat['id']} needs a non-empty string 'name', got {cat['name']!r}",
                    where,
                )
            ids[cat["id"]] += 1
        for cat_id, n in ids.items():
            if n > 1:
                self.file_problem(
                    "duplicate-id",
                    f"category id {cat_id} appears {n} times; category ids must be unique",
                )
        if not categories:
            self.file_problem("category", "'categories' is empty; list at least one category")
        return set(ids)

    def check_images_records(self, images: List[Any]) -> Dict[Any, dict]:
        ids: Counter = Counter(
            img.get("id") for img in images if isinstance(img, dict) and _is_int(img.get("id"))
        )
        valid: Dict[Any, dict] = {}
        for i, img in enumerate(images):
            if not isinstance(img, dict):
                self.report.add(
                    "image-record",
                    f"{self.json_file} images[{i}]",
                    f"must be an object, got {type(img).__name__}",
                    dropped=self.skip_invalid,
                )
                continue
            image_id = img.get("id", f"<missing> (images[{i}])")
            if not _hashable(image_id):
                image_id = repr(image_id)
            missing = [k for k in ("id", "file_name", "height", "width") if k not in img]
            if missing:
                self.image_problem(
                    "missing-field",
                    image_id,
                    f"image record is missing {missing} (needs id, file_name, height, width)",
                )
                self.bad_images.add(image_id)
                continue
            problems = []
            if not _is_int(img["id"]):
                problems.append(f"'id' must be an integer, got {img['id']!r}")
            if not isinstance(img["file_name"], str) or not img["file_name"]:
                problems.append(f"'file_name' must be a non-empty string, got {img['file_name']!r}")
            for key in ("height", "width"):
                if not _is_int(img[key]) or img[key] <= 0:
                    problems.append(f"'{key}' must be a positive integer, got {img[key]!r}")
            if problems:
                self.image_problem("image-record", image_id, "; ".join(problems))
                self.bad_images.add(image_id)
                continue
            if ids[image_id] > 1:
                self.image_problem(
                    "duplicate-id",
                    image_id,
                    f"image id {image_id} is used by {ids[image_id]} image records; ids must be unique (all of them are rejected, as it is ambiguous which one annotations mean)",
                )
                self.bad_images.add(image_id)
                continue
            valid[img["id"]] = img
        return valid

    def check_image_files(self, images: Dict[Any, dict]) -> None:
        def probe(img):
            path = os.path.join(self.image_root, img["file_name"])
            if not os.path.exists(path):
                return img, path, "missing", None
            try:
                return img, path, None, read_image_size(path)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
                return img, path, f"unreadable ({type(e).__name__}: {e})", None

        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:  # I/O bound: headers only
            results = list(pool.map(probe, images.values()))
        for img, path, error, size in results:
            image_id = img["id"]
            if error == "missing":
                self.image_problem(
                    "image-file",
                    image_id,
                    f"image file {path} does not exist (file_name {img['file_name']!r} under image root {self.image_root})"
                    + _missing_image_hint(img["file_name"], self.image_root),
                )
            elif error:
                self.image_problem("image-file", image_id, f"image file {path} is {error}")
            elif size != (img["width"], img["height"]):
                self.image_problem(
                    "image-size",
                    image_id,
                    f"image file {path} is {size[0]}x{size[1]} (width x height, after EXIF rotation) but the json says {img['width']}x{img['height']}; fix 'width'/'height' in the json",
                )
            else:
                continue
            self.bad_images.add(image_id)

    def check_annotations(
        self,
        annotations: List[Any],
        images: Dict[Any, dict],
        category_ids: Set[Any],
        all_image_ids: Set[Any],
    ) -> None:
        ids: Counter = Counter(
            a.get("id") for a in annotations if isinstance(a, dict) and _is_int(a.get("id"))
        )
        for position, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                self.annotation_problem(
                    "annotation-record",
                    position,
                    {},
                    f"must be an object, got {type(ann).__name__}",
                )
                continue
            required = ["id", "image_id", "category_id", "bbox"]
            if self.require_masks:
                required.append("segmentation")
            if self.for_evaluation:
                required += [
                    "area",
                    "iscrowd",
                ]  # pycocotools' COCOeval reads both for every ground truth
            missing = [k for k in required if k not in ann]
            if missing:
                why = []
                if "segmentation" in missing:
                    why.append("segmentation is needed because MODEL.MASK_ON is set")
                if "area" in missing or "iscrowd" in missing:
                    why.append("area and iscrowd are needed by COCO evaluation")
                self.annotation_problem(
                    "missing-field",
                    position,
                    ann,
                    f"annotation is missing {missing}" + (f" ({'; '.join(why)})" if why else ""),
                )
                continue
            if not _is_int(ann["id"]):
                self.annotation_problem(
                    "annotation-record",
                    position,
                    ann,
                    f"'id' must be an integer, got {ann['id']!r}",
                )
                continue
            if ids[ann["id"]] > 1:
                self.annotation_problem(
                    "duplicate-id",
                    position,
                    ann,
                    f"annotation id {ann['id']} is used {ids[ann['id']]} times; ids must be unique (Detectron2's loader asserts it)",
                )
                continue
            image_id = ann["image_id"]
            if not _hashable(image_id) or image_id not in all_image_ids:
                self.annotation_problem(
                    "unknown-id",
                    position,
                    ann,
                    f"image_id {image_id!r} is not the id of any image in 'images'",
                )
                continue
            if not _hashable(ann["category_id"]) or ann["category_id"] not in category_ids:
                self.annotation_problem(
                    "unknown-id",
                    position,
                    ann,
                    f"category_id {ann['category_id']!r} is not in 'categories' (valid: {sorted(category_ids)[:20]})",
                )
                continue
            img = images.get(image_id)
            if img is None:
                continue  # its image record is unusable: dropped (and counted) with the image
            self.annotation_content(position, ann, img)

    def annotation_content(self, position: int, ann: dict, img: dict) -> None:
        """Check one annotation against its image; report its error, or its warnings (and
        apply their repairs), or under --strict its warnings as errors."""
        found: List[tuple] = []
        error = annotation_findings(ann, img, found)
        if error:
            self.annotation_problem(error[0], position, ann, error[1])
            return
        for kind, message, repair, apply in found:
            if self.strict:
                self.annotation_problem(kind, position, ann, message + self._STRICT)
                continue
            self.report.add(
                kind, self.annotation_where(position, ann), message, level="warning", repair=repair
            )
            if apply is not None:
                apply()
                self.repaired.add(ann["id"])

    def check_dataset_level(
        self, data: dict, images: Dict[Any, dict], category_ids: Set[Any]
    ) -> None:
        """Warnings about the dataset as a whole (dataset_warnings.py)."""
        for finding in dataset_warnings(data, images, category_ids, self.bad_images):
            if finding.image_id is None:
                self.file_warning(finding.kind, finding.message)
            else:
                self.image_warning(finding.kind, finding.image_id, finding.message)

    def run(self) -> CocoCheckResult:
        data = self.load()
        self.report.checked.append(f"COCO json {self.json_file}")
        if data is None:
            return CocoCheckResult(self.report)
        # A converted dataset (VIA, labelme) names each record's source and the importer's warnings.
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        sources = info.get(SOURCES_KEY)
        if isinstance(sources, dict):
            self.sources.update({k: v for k, v in sources.items() if isinstance(v, dict)})
        for entry in info.get(WARNINGS_KEY) or []:
            if isinstance(entry, list) and len(entry) == 3 and entry[0] in WARNINGS:
                kind, where, message = entry
                if self.strict:
                    self.report.add(kind, where, message + self._STRICT)
                else:
                    self.report.add(kind, where, message, level="warning")
        category_ids = self.check_categories(data["categories"])
        all_image_ids = {
            img["id"]
            for img in data["images"]
            if isinstance(img, dict) and "id" in img and _hashable(img["id"])
        }
        images = self.check_images_records(data["images"])
        if self.check_images:
            self.check_image_files(images)
        # Annotations are checked against every well-formed image record, also those whose file is
        # bad, so that one run reports every problem; they are dropped with the image anyway.
        self.check_annotations(data["annotations"], images, category_ids, all_image_ids)
        self.check_dataset_level(data, images, category_ids)
        good_images = {i: img for i, img in images.items() if i not in self.bad_images}
        return self._result(data, good_images)

    def _result(self, data: dict, good_images: Dict[Any, dict]) -> CocoCheckResult:
        result = CocoCheckResult(self.report)
        if self.report.errors:
            return result  # without skip_invalid, or file-level errors: not usable
        kept_images = [
            img for img in data["images"] if isinstance(img, dict) and img.get("id") in good_images
        ]
        kept_annotations = []
        with_image = 0
        for position, ann in enumerate(data["annotations"]):
            if position in self.bad_annotations:
                ann_id = ann.get("id") if isinstance(ann, dict) else None
                result.dropped_annotation_ids.add(ann_id if _hashable(ann_id) else repr(ann_id))
                continue
            if not _hashable(ann["image_id"]) or ann["image_id"] not in good_images:
                with_image += 1
                result.dropped_annotation_ids.add(ann["id"])
                continue
            kept_annotations.append(ann)
        result.dropped_image_ids = {
            img.get("id") if isinstance(img, dict) and _hashable(img.get("id")) else None
            for img in data["images"]
        } - set(good_images)
        cleaned = dict(data)
        cleaned["images"] = kept_images
        cleaned["annotations"] = kept_annotations
        result.data = cleaned
        result.repaired_annotation_ids = set(self.repaired) - result.dropped_annotation_ids
        n_images = len(data["images"]) - len(kept_images)
        n_own = len(self.bad_annotations)
        if n_images or n_own or with_image:
            self.report.dropped[self.name] = {
                "images": n_images,
                "annotations (invalid)": n_own,
                "annotations (of dropped images)": with_image,
                "images kept": len(kept_images),
                "annotations kept": len(kept_annotations),
            }
        if not kept_images:
            self.report.add(
                "empty-dataset",
                self.json_file,
                "no valid image is left; fix the records listed above",
            )
            result.data = None
        return result


def check_coco_json(
    json_file: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    skip_invalid: bool = False,
    require_masks: bool = False,
    for_evaluation: bool = False,
    check_images: bool = True,
    num_threads: int = 8,
    strict: bool = False,
) -> CocoCheckResult:
    """Check a COCO instances json and the images it lists; report every problem.

    Args:
        json_file: the COCO json.
        image_root: directory that ``file_name`` is relative to.
        dataset_name: name used in the drop summary (defaults to the json path).
        skip_invalid: drop invalid image/annotation records (each listed, all counted) instead of
            failing; ``result.data`` is then the json without them.
        require_masks: annotations need a ``segmentation`` (MODEL.MASK_ON).
        for_evaluation: annotations need ``area`` and ``iscrowd`` (COCOeval reads them).
        check_images: open every image header (existence, readability, size vs json).
        num_threads: threads for reading image headers.
        strict: report every warning of the policy (policy.py) as an error.

    Warnings are in the report (``level == "warning"``) and their repairs are applied to
    ``result.data``.
    """
    checker = _CocoChecker(
        json_file,
        image_root,
        dataset_name or json_file,
        skip_invalid,
        require_masks,
        for_evaluation,
        check_images,
        num_threads,
        strict,
    )
    return checker.run()
