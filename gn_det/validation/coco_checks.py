"""``check_coco_json``: a COCO instances json and its images, every record, in one read of the
file, decided by the rule of policy.py.

Each finding names the file, the image id and the annotation id (and, for converted VIA /
labelme data, the source record). Errors of one record are dropped under ``skip_invalid`` (an
image with all of its annotations); errors of the file as a whole are not. The result holds the
data training reads: repaired and without dropped records, plus how every record ended
(``DatasetCounts``: in = as they are + repaired + dropped).
"""

import functools
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set, Tuple

import numpy as np

from ..data.coco_register import summarize_coco_dict
from ..data.formats.common import SOURCES_KEY
from ..data.gc_pause import paused_gc
from .coco_annotations import AnnotationCheck
from .coco_file import check_categories, check_image_records, read_json
from .fast_path import clean_annotations
from .geometry import number
from .header_cache import header_cache_file, probe_images_cached
from .image_files import ImageInfo, exif_transform, find_image, probe_images
from .policy import RULES, outcome
from .report import DatasetCounts, ValidationReport

__all__ = ["CocoCheckResult", "check_coco_json", "recorder"]

_STRICT = " (an error under --strict)"


def recorder(report: ValidationReport, strict: bool, skip_invalid: bool):
    """``record(kind, where, message, repair="") -> outcome``: adds a dataset finding to
    ``report`` as policy.py decides it (``strict``: every finding an error; ``skip_invalid``:
    record-level errors marked dropped) and returns the outcome, which the caller acts on."""

    def record(kind: str, where: str, message: str, repair: str = "") -> str:
        result = outcome(kind, strict)
        rule = RULES[kind]
        if strict and rule.outcome != "error":
            message += _STRICT
        dropped = result == "error" and skip_invalid and not rule.file_level
        report.add(kind, where, message, dropped=dropped, outcome=result, repair=repair if result == "repair" else "")
        return result

    return record


@dataclass
class CocoCheckResult:
    """What ``check_coco_json`` found.

    Attributes:
        report: every finding (record errors marked ``dropped`` under skip_invalid).
        data: the COCO dict training reads: repaired, dropped records left out (None when the
            dataset cannot be used as it is).
        counts: how the records ended.
        metadata: what registration needs (``CocoDatasetSummary.metadata()`` of ``data``), from
            the same read; None when ``data`` is.
        changed: ``data`` differs from ``json_file`` (something was repaired or dropped).
        json_file: the COCO json checked (for VIA / labelme data, the converted one).
    """

    report: ValidationReport
    data: Optional[dict] = None
    json_file: str = ""
    counts: DatasetCounts = field(default_factory=DatasetCounts)
    metadata: Optional[dict] = None
    changed: bool = False
    dropped_image_ids: Set[Any] = field(default_factory=set)
    dropped_annotation_ids: Set[Any] = field(default_factory=set)
    repaired_annotation_ids: Set[Any] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.report.ok


class _Refused(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class _CocoChecker:
    def __init__(self, json_file: str, image_root: str, name: str, *, skip_invalid: bool, strict: bool,
                 require_masks: bool, for_evaluation: bool, for_training: bool, check_images: bool,
                 num_threads: int, mask_format: str, header_cache_dir: Optional[str] = None):
        self.json_file, self.image_root, self.name = json_file, image_root, name
        self.skip_invalid, self.strict = skip_invalid, strict
        self.require_masks, self.for_evaluation, self.for_training = require_masks, for_evaluation, for_training
        self.check_images, self.num_threads, self.mask_format = check_images, num_threads, mask_format
        self.header_cache_dir = header_cache_dir
        self.report = ValidationReport()
        self._record = recorder(self.report, strict, skip_invalid)
        self.sources: Dict[str, Dict[str, str]] = {"images": {}, "annotations": {}}
        self.counts = DatasetCounts()
        self.dropped: Dict[int, str] = {}  # annotation position -> why
        self.repaired: Set[int] = set()
        self.errors: Set[int] = set()  # annotation positions with errors (not dropped)
        self.bad_images: Set[Any] = set()
        self.images_repaired: Set[Any] = set()
        self.with_bad_image: Set[int] = set()  # annotation positions whose image has an error

    # -- findings -------------------------------------------------------------------------

    def record(self, kind: str, where: str, message: str, repair: str = "") -> str:
        """Report a finding; returns what happens to its record (policy.py's outcome)."""
        return self._record(kind, where, message, repair)

    def file_finding(self, kind: str, where: str, message: str, repair: str = "") -> str:
        prefix = f"dataset {self.name!r}: " if self.name != self.json_file and where == self.json_file else ""
        return self.record(kind, prefix + where, message, repair)

    def image_where(self, image_id, index=None) -> str:
        where = f"{self.json_file} image id {image_id!r}" if index is None or image_id is not None else \
            f"{self.json_file} images[{index}]"
        source = self.sources["images"].get(str(image_id))
        return f"{source} ({where})" if source else where

    def annotation_where(self, position: int, ann) -> str:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        where = f"{self.json_file} image id {image_id!r} annotation id {ann_id!r} (annotations[{position}])"
        source = self.sources["annotations"].get(str(ann_id))
        return f"{source} ({where})" if source else where

    # -- images -----------------------------------------------------------------------------

    def check_files(self, images: Dict[int, dict], size_from_file: Set[int]) -> Dict[int, Any]:
        """Image files: existence, readability, bit depth, size against the record. Returns the
        annotation transforms of EXIF-rotated images recorded with their stored size."""
        todo = [img for i, img in images.items() if self.check_images or i in size_from_file]
        paths = {}
        for img in todo:
            paths[img["id"]], repaired = find_image(self.image_root, img["file_name"])
            if repaired is not None:
                if self.record("file-name", self.image_where(img["id"]), f"file_name {img['file_name']!r} "
                               "does not exist as written (Windows separators)", f"read as {repaired!r}") == "repair":
                    img["file_name"] = repaired
                    self.images_repaired.add(img["id"])
                else:
                    self.bad_images.add(img["id"])
        todo_paths = [paths[img["id"]] for img in todo]
        if self.header_cache_dir:  # headers of unchanged files from the last run into this OUTPUT_DIR
            cache_file = header_cache_file(self.header_cache_dir, self.image_root)
            probed = probe_images_cached(todo_paths, cache_file, self.num_threads)
        else:
            probed = probe_images(todo_paths, self.num_threads)
        infos = dict(zip([img["id"] for img in todo], probed))
        transforms = {}
        for img in todo:
            image_id, info = img["id"], infos[img["id"]]
            transform = self._check_file(img, info, image_id in size_from_file)
            if transform is not None:
                transforms[image_id] = transform
        return transforms

    def _check_file(self, img: dict, info: ImageInfo, size_missing: bool):
        where, image_id = self.image_where(img["id"]), img["id"]
        if info.error:
            hint = ""
            if info.missing:
                base = os.path.basename(img["file_name"].replace("\\", "/"))
                if base != img["file_name"] and os.path.isfile(os.path.join(self.image_root, base)):
                    hint = f"; a file {base!r} is in the image root itself"
            self.record("image-file", where, f"{info.error} (file_name {img['file_name']!r} under image root "
                        f"{self.image_root}){hint}")
        elif info.deep:
            self.record("image-bit-depth", where, f"image file {img['file_name']!r} has mode {info.mode!r} (16-bit "
                        "or float): Detectron2 reads it clipped to 8 bits, mostly white; convert the images to 8 "
                        "bits per channel")
        elif size_missing:
            if self.record("image-size-missing", where, f"width / height ({img.get('width')!r}, "
                           f"{img.get('height')!r}) are not positive integers", f"set to {info.size[0]}x{info.size[1]} "
                           "from the image file") == "repair":
                img["width"], img["height"] = info.size
                self.images_repaired.add(image_id)
                return None
        elif (img["width"], img["height"]) == info.size:
            return None
        elif (img["width"], img["height"]) == info.stored_size:
            if self.record("exif-rotated", where, f"the record gives {img['width']}x{img['height']}, the stored size "
                           f"of an image with EXIF orientation {info.orientation}, which Detectron2 reads turned to "
                           f"{info.size[0]}x{info.size[1]}", "its annotations turned with it") == "repair":
                img["width"], img["height"] = info.size
                self.images_repaired.add(image_id)
                return exif_transform(info.orientation, info.stored_size)
        else:
            self.record("image-size", where, f"image file {img['file_name']!r} is {info.size[0]}x{info.size[1]} "
                        f"(width x height, after EXIF rotation) but the record says {img['width']}x{img['height']}; "
                        "fix 'width' / 'height' (and the annotations, if the image was resized after labelling)")
        self.bad_images.add(image_id)
        return None

    # -- annotations ------------------------------------------------------------------------

    def check_annotations(self, annotations: list, images: Dict[int, dict], category_ids: Set[int],
                          transforms: Dict[int, Any]) -> None:
        sizes = {i: (img["width"], img["height"]) for i, img in images.items()
                 if i not in self.bad_images and i not in transforms}
        clean, duplicates, largest = clean_annotations(
            annotations, sizes, category_ids, require_masks=self.require_masks, for_evaluation=self.for_evaluation)
        duplicates = set(duplicates)
        fresh = iter(range(largest + 1, largest + 1 + len(annotations)))
        taken = {a.get("id") for a in annotations if type(a) is dict and type(a.get("id")) is int}
        for position in np.flatnonzero(~clean).tolist():
            ann = annotations[position]
            self.annotation(position, ann, images, category_ids, transforms.get(
                ann.get("image_id") if isinstance(ann, dict) else None), position in duplicates,
                lambda: next(fresh), taken)

    def _reference(self, ann: dict, key: str, where: str) -> Tuple[Optional[int], bool]:
        """An annotation's image_id / category_id as an int (a numeric string repaired):
        ``(value or None, repaired)``."""
        value = ann.get(key)
        if type(value) is int:
            return value, False
        parsed, was_string = number(value)
        if not was_string or not parsed.is_integer():
            return None, False
        if self.record("numeric-string", where, f"{key} {value!r} is a string", "converted to a number") != "repair":
            raise _Refused("numeric-string")
        ann[key] = int(parsed)
        return ann[key], True

    def annotation(self, position, ann, images, category_ids, transform, duplicate, new_id, taken) -> None:
        try:
            self._annotation(position, ann, images, category_ids, transform, duplicate, new_id, taken)
        except _Refused as refused:  # a repair --strict turned into an error: the record's one finding
            self._settle(position, "error", refused.kind)

    def _annotation(self, position, ann, images, category_ids, transform, duplicate, new_id, taken) -> None:
        where = self.annotation_where(position, ann)
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            self._settle(position, self.record("annotation-record", where, "an annotation must be an object with "
                         f"'image_id' and 'category_id', got {ann!r}"[:300]), "annotation-record")
            return
        image_id, image_repaired = self._reference(ann, "image_id", where)
        if image_id in self.bad_images and not _has_size(images.get(image_id)):  # nothing to check against
            self.with_bad_image.add(position)
            return
        if image_id not in images:
            self._settle(position, self.record("unknown-image", where, f"image_id {ann['image_id']!r} is not the id "
                                               "of any image in 'images'"), "unknown-image")
            return
        category_id, category_repaired = self._reference(ann, "category_id", where)
        if category_id not in category_ids:
            result = self.record("unknown-category", where, f"category_id {ann['category_id']!r} is not in "
                                 f"'categories' (valid: {sorted(category_ids)[:20]})")
            if image_id in self.bad_images:
                self.with_bad_image.add(position)
            else:
                self._settle(position, result, "unknown-category")
            return
        img = images[image_id]
        if transform is not None:
            transform(ann)
        check = AnnotationCheck(ann, img["width"], img["height"], functools.partial(self._finding, where),
                                require_masks=self.require_masks, for_evaluation=self.for_evaluation,
                                new_id=new_id, taken_ids=taken)
        if duplicate:
            check.renumber(f"id {ann['id']} is used by an earlier annotation too (Detectron2's loader asserts unique ids)")
        elif self.for_evaluation and ann.get("id") == 0:
            check.renumber("id 0: COCOeval counts a detection matched to ground truth id 0 as a miss")
        state = check.run()
        if image_id in self.bad_images:  # checked, so that one run reports every problem; goes with its image
            self.with_bad_image.add(position)
            return
        self._settle(position, state, check.kind)
        if state == "ok" and (check.repaired or image_repaired or category_repaired or transform is not None):
            self.repaired.add(position)

    def _finding(self, where: str, kind: str, message: str, repair: str = "") -> str:
        return self.record(kind, where, message, repair)

    def _settle(self, position: int, result: str, kind: str) -> None:
        if result == "drop" or (result == "error" and self.skip_invalid):
            self.dropped[position] = kind
        elif result == "error":
            self.errors.add(position)

    # -- the whole ----------------------------------------------------------------------------

    def run(self) -> CocoCheckResult:
        with paused_gc():  # the parsed json is a tree: the collector's walks of it find nothing
            return self._run()

    def _run(self) -> CocoCheckResult:
        self.report.checked.append(f"COCO json {self.json_file}")
        data = read_json(self.json_file, self.file_finding)
        if data is None:
            return CocoCheckResult(self.report, json_file=self.json_file)
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        if isinstance(info.get(SOURCES_KEY), dict):  # converted VIA / labelme data names its sources
            self.sources.update({k: v for k, v in info[SOURCES_KEY].items() if isinstance(v, dict)})
        categories, _ = check_categories(data["categories"], self.json_file, self.file_finding)
        images, refused, size_from_file, repaired = check_image_records(data["images"], self.image_where, self.record)
        self.bad_images |= refused
        self.images_repaired |= repaired
        transforms = self.check_files(images, size_from_file)
        if categories is None:
            return CocoCheckResult(self.report, json_file=self.json_file)
        data["categories"] = categories
        category_ids = {c["id"] for c in categories}
        annotations = data["annotations"]
        if self.require_masks and annotations and not any(isinstance(a, dict) and a.get("segmentation") for a in annotations):
            self.file_finding("no-masks", self.json_file, f"none of the {len(annotations)} annotations has a mask "
                              "('segmentation' empty or missing): the dataset holds boxes only, and MODEL.MASK_ON "
                              "trains masks; set MODEL.MASK_ON False to train the boxes")
            self.require_masks = False  # the other problems are still found, without one per annotation
        self.check_annotations(annotations, images, category_ids, transforms)
        return self.result(data, images, category_ids)

    def dataset_findings(self, data: dict, kept: list, category_ids: Set[int]) -> None:
        used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
        order = {cat_id: i for i, cat_id in enumerate(sorted(category_ids))}
        names: Dict[str, list] = {}
        for cat in data["categories"]:
            names.setdefault(cat["name"], []).append(cat["id"])
            if cat["id"] not in used:
                self.record("unused-category", f"{self.json_file} category id {cat['id']}", f"category "
                            f"{cat['name']!r} is used by no annotation; it is still class {order[cat['id']]} of the model")
        for name, ids in names.items():
            if len(ids) > 1:
                self.record("duplicate-category-name", f"{self.json_file} categories {ids}", f"all are named "
                            f"{name!r}; each is its own class, but tables keyed by class name cannot tell them apart")
        if self.require_masks and self.mask_format == "polygon":
            rle = sum(1 for a in kept if isinstance(a.get("segmentation"), dict) and not a.get("iscrowd", 0))
            if rle:
                self.file_finding("mask-format", self.json_file, f"{rle} trained (non-crowd) annotation(s) have RLE "
                                  "masks, which INPUT.MASK_FORMAT 'polygon' cannot read; set INPUT.MASK_FORMAT bitmask")
        # Only when nothing else stops the run: refused records are listed already, with the way forward.
        if self.for_training and self.report.ok and not any(not a.get("iscrowd", 0) for a in kept):
            dropped = Counter(k for k in self.dropped.values() if k)
            self.file_finding("no-usable-annotation", self.json_file, "no annotation is left to train on"
                              + (f": dropped {dict(dropped)}" if dropped else "") + "; see the records listed above")

    def result(self, data: dict, images: Dict[int, dict], category_ids: Set[int]) -> CocoCheckResult:
        annotations = data["annotations"]
        image_ids_kept = set(images) - self.bad_images
        gone = set(self.dropped) | self.errors | self.with_bad_image
        kept = [a for i, a in enumerate(annotations) if i not in gone]
        self.dataset_findings(data, kept, category_ids)
        bad_image_records = [img for img in data["images"]
                             if not (isinstance(img, dict) and img.get("id") in image_ids_kept)]
        counts = self.counts
        counts.annotations_in, counts.images_in = len(annotations), len(data["images"])
        by_kind = Counter(self.dropped.values())
        if self.skip_invalid:
            counts.images_dropped = len(bad_image_records)
            by_kind.update({"with their image": len(self.with_bad_image)} if self.with_bad_image else {})
            counts.annotations_dropped = len(self.dropped) + len(self.with_bad_image)
        else:
            counts.skippable_images = len(bad_image_records)
            counts.skippable_annotations = len(self.errors) + len(self.with_bad_image)
            counts.annotations_dropped = len(self.dropped)
        counts.dropped_by_kind = dict(by_kind)
        counts.annotations_repaired = len(self.repaired - gone)
        counts.images_repaired = len(self.images_repaired & image_ids_kept)
        self.report.counts[self.name] = counts
        result = CocoCheckResult(self.report, counts=counts, json_file=self.json_file)
        result.dropped_annotation_ids = {_key(annotations[i]) for i in set(self.dropped) | self.with_bad_image}
        result.repaired_annotation_ids = {_key(annotations[i]) for i in self.repaired - gone}
        result.dropped_image_ids = {img.get("id") if isinstance(img, dict) else None for img in bad_image_records}
        if not self.report.ok:
            return result
        cleaned = dict(data)
        if bad_image_records:
            cleaned["images"] = [img for img in data["images"] if isinstance(img, dict) and img.get("id") in image_ids_kept]
        if gone:
            cleaned["annotations"] = kept
        result.data = cleaned
        result.metadata = summarize_coco_dict(self.name, self.json_file, self.image_root, cleaned).metadata()
        # Every repair changes the data and every drop removes a record; warnings change nothing.
        result.changed = any(p.outcome in ("repair", "drop") or p.dropped for p in self.report.problems)
        return result


def _has_size(img: Optional[dict]) -> bool:
    return img is not None and all(type(img.get(k)) is int and img[k] > 0 for k in ("width", "height"))


def _key(ann) -> Any:
    value = ann.get("id") if isinstance(ann, dict) else None
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def check_coco_json(
    json_file: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    skip_invalid: bool = False,
    require_masks: bool = False,
    for_evaluation: bool = False,
    for_training: bool = True,
    check_images: bool = True,
    num_threads: int = 8,
    strict: bool = False,
    mask_format: str = "bitmask",
    header_cache_dir: Optional[str] = None,
) -> CocoCheckResult:
    """Check a COCO instances json and the images it lists; report every finding (policy.py).

    Args:
        json_file: the COCO json; image_root: the directory ``file_name`` is relative to.
        dataset_name: the name in the summary (defaults to the json path).
        skip_invalid: drop records with errors (each listed, all counted) instead of failing.
        require_masks: instance masks are trained (MODEL.MASK_ON): instances need a valid one.
        for_evaluation: COCOeval reads the data (``area``, ``iscrowd``, annotation id 0).
        for_training: a training set: no usable annotation left is an error.
        check_images: open every image header (existence, readability, size, EXIF, bit depth).
        num_threads: threads reading image headers where the reads wait for the disk (probe_images).
        strict: every warning, repair and drop is an error.
        mask_format: INPUT.MASK_FORMAT ("polygon" cannot read RLE masks of trained instances).
        header_cache_dir: remember image headers there and read only files changed since
            (header_cache.py; the train command uses OUTPUT_DIR/validated_datasets).
    """
    return _CocoChecker(
        json_file, image_root, dataset_name or json_file, skip_invalid=skip_invalid, strict=strict,
        require_masks=require_masks, for_evaluation=for_evaluation, for_training=for_training,
        check_images=check_images, num_threads=num_threads, mask_format=mask_format,
        header_cache_dir=header_cache_dir,
    ).run()
