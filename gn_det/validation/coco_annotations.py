"""One COCO annotation against its image, as policy.py decides: its findings, and the repairs
they allow, applied in place.

``AnnotationCheck`` is the one place each annotation rule is written. The checker runs it only
on the annotations ``fast_path.clean_annotations`` could not pass as surely clean, so that a
COCO-sized json costs little more than Detectron2's own load.
"""

import math
from typing import Callable, Optional

import numpy as np
import pycocotools.mask as mask_util

from .geometry import box_inside_fraction, mask_of, number, polygon_inside_fraction, polygon_problem, polygon_values, rle_problem
from .policy import BORDER_TOLERANCE_PX, MIN_INSIDE_FRACTION

__all__ = ["AnnotationCheck"]


def _box(value):
    """``(floats, was a string)`` for a 4-number box, or ``(None, False)``."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None, False
    parsed = [number(v) for v in value]
    if any(v is None for v, _ in parsed):
        return None, False
    return [v for v, _ in parsed], any(s for _, s in parsed)


class AnnotationCheck:
    """Checks one annotation dict (``ann``) of an image ``width`` x ``height``.

    ``report(kind, message, repair)`` records a finding and returns its outcome ("warning",
    "repair", "drop" or "error", policy.py); a repair is applied only when the outcome is
    "repair". ``run()`` returns "ok", "drop" or "error": what becomes of the annotation;
    ``repaired`` says whether it was changed.
    """

    def __init__(self, ann: dict, width: int, height: int, report: Callable[[str, str, str], str], *,
                 require_masks: bool, for_evaluation: bool, new_id: Optional[Callable[[], int]] = None,
                 taken_ids: Optional[set] = None):
        self.ann, self.width, self.height, self._report = ann, width, height, report
        self.require_masks, self.for_evaluation = require_masks, for_evaluation
        self.new_id, self.taken_ids = new_id, taken_ids if taken_ids is not None else set()
        self.repaired = False
        self.state = "ok"
        self.kind = ""  # the finding that decided a "drop" or "error"
        self.kinds = set()  # every kind reported

    def finding(self, kind: str, message: str, repair: str = "") -> bool:
        """Report; True when the repair may be applied (the outcome is "repair")."""
        outcome = self._report(kind, message, repair)
        self.kinds.add(kind)
        if outcome in ("error", "drop") and self.state == "ok":
            self.state, self.kind = outcome, kind
        if outcome == "repair":
            self.repaired = True
        return outcome == "repair"

    def run(self) -> str:
        for step in (self._id, self._crowd, self._segmentation, self._box, self._area):
            step()
            if self.state != "ok":
                break
        return self.state

    # -- scalar fields ---------------------------------------------------------------------

    def renumber(self, why: str) -> None:
        if self.finding("annotation-id", why, "renumbered") and self.new_id is not None:
            self.ann["id"] = self.new_id()
            self.taken_ids.add(self.ann["id"])

    def _id(self) -> None:
        value = self.ann.get("id")
        if isinstance(value, str):
            parsed, _ = number(value)
            if parsed is not None and parsed.is_integer() and int(parsed) not in self.taken_ids:
                if self.finding("numeric-string", f"id {value!r} is a string", "converted to a number"):
                    self.ann["id"] = int(parsed)
                return
        if "id" not in self.ann:
            self.renumber("the annotation has no 'id' (Detectron2's loader needs one)")
        elif not isinstance(value, int) or isinstance(value, bool):
            self.renumber(f"id {value!r} is not an integer")

    def _crowd(self) -> None:
        ann = self.ann
        if ann.get("ignore"):
            if self.finding("ignore-flag", f"'ignore': {ann['ignore']!r}: Detectron2's loader refuses it",
                            "made a crowd region (iscrowd 1)"):
                ann.pop("ignore")
                ann["iscrowd"] = 1
            return
        if "iscrowd" not in ann:
            if self.for_evaluation and self.finding("iscrowd", "no 'iscrowd' (COCOeval reads it)", "set to 0"):
                ann["iscrowd"] = 0
            return
        value = ann["iscrowd"]
        if value is None:
            if self.finding("iscrowd", "iscrowd is null: Detectron2 would treat it as a crowd and never train it",
                            "set to 0"):
                ann["iscrowd"] = 0
            return
        parsed, was_string = number(value)
        if was_string and parsed in (0.0, 1.0):
            if self.finding("numeric-string", f"iscrowd {value!r} is a string: Detectron2 would treat it as a "
                            "crowd and never train it", "converted to a number"):
                ann["iscrowd"] = int(parsed)
        elif not isinstance(value, (bool, int, float)) or value not in (0, 1):
            self.finding("iscrowd-value", f"iscrowd {value!r} is not 0 or 1: Detectron2 treats it as a crowd "
                         "(never trained; ignored by COCOeval)")

    # -- the mask -------------------------------------------------------------------------

    def _segmentation(self) -> None:
        ann = self.ann
        segm = ann.get("segmentation")
        if not self.require_masks:
            self._unused_segmentation(segm)
            return
        if isinstance(segm, dict) and segm:
            self._rle(segm)
            return
        if not segm:
            self.finding("no-mask", "the annotation has no segmentation ('segmentation' "
                         + ("is missing)" if "segmentation" not in ann else f"is {segm!r})"))
            return
        if not isinstance(segm, list):
            self.finding("no-mask", f"segmentation is a {type(segm).__name__}, neither polygons nor an RLE")
            return
        if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in segm):
            if not self.finding("polygon-format", "segmentation is one flat list [x1, y1, ...], not a list of "
                                "polygons", "wrapped into [[x1, y1, ...]]"):
                return
            segm = ann["segmentation"] = [segm]
        kept, problems, lenient = [], [], set()
        for k, polygon in enumerate(segm):
            values, repaired, problem = polygon_values(polygon)
            if values is not None:
                problem = polygon_problem(values, self.width, self.height, BORDER_TOLERANCE_PX)
            if problem:
                problems.append(f"polygon {k} of {len(segm)} {problem}")
            else:
                kept.append(values)
                if repaired:
                    lenient.add(repaired)
        for kind in sorted(lenient):
            what = "numbers as strings" if kind == "numeric-string" else "[[x, y], ...] pairs"
            if not self.finding(kind, f"polygon coordinates given as {what}", "converted to [x1, y1, x2, y2, ...] numbers"):
                return
        if not kept:
            self.finding("no-mask", "no valid polygon: " + "; ".join(problems))
            return
        if problems and not self.finding("invalid-polygon", "; ".join(problems), "the polygon is left out"):
            return
        if problems or lenient:
            ann["segmentation"] = kept
        self._mostly_outside_polygons(kept)

    def _unused_segmentation(self, segm) -> None:
        """Masks are not trained (Detectron2's mapper removes them), but Detectron2's loader still
        reads them: it leaves out an instance none of whose polygons has an even number (>= 6) of
        coordinates, and crashes on a segmentation that is neither a list of polygons nor an RLE.
        Such a segmentation is removed, so that the box trains."""
        if not segm:
            return
        if isinstance(segm, dict):
            if isinstance(segm.get("counts"), list) and rle_problem(segm, self.width, self.height):
                why = "a malformed uncompressed RLE (Detectron2's loader converts it)"
            else:
                return
        elif isinstance(segm, list) and all(isinstance(p, (list, tuple)) for p in segm):
            if any(len(p) % 2 == 0 and len(p) >= 6 for p in segm):
                return
            why = "no polygon has an even number (>= 6) of coordinates: Detectron2's loader would leave the box out"
        else:
            why = f"segmentation is {type(segm).__name__} {str(segm)[:40]}, neither polygons nor an RLE"
        if self.finding("invalid-polygon", why, "segmentation removed (masks are not trained)"):
            self.ann.pop("segmentation")

    def _mostly_outside_polygons(self, polygons) -> None:
        tol = BORDER_TOLERANCE_PX
        points = np.concatenate([np.asarray(p, float).reshape(-1, 2) for p in polygons])
        lo, hi = points.min(axis=0), points.max(axis=0)
        if lo[0] >= -tol and lo[1] >= -tol and hi[0] <= self.width + tol and hi[1] <= self.height + tol:
            return
        areas = [polygon_inside_fraction(p, self.width, self.height) for p in polygons]
        inside = min(areas)
        if inside < MIN_INSIDE_FRACTION:
            self.finding("mostly-outside", f"a polygon extends past the {self.width}x{self.height} image (x in "
                         f"[{lo[0]:g}, {hi[0]:g}], y in [{lo[1]:g}, {hi[1]:g}]); only {inside:.0%} of its area "
                         "lies inside: wrong image or wrong units?")

    def _rle(self, segm: dict) -> None:
        problem = rle_problem(segm, self.width, self.height)
        if problem:
            self.finding("rle", problem)
            return
        if not mask_util.area(mask_of(segm, self.height, self.width)):
            self.finding("no-mask", "the RLE mask has no pixel")

    # -- the box and the area -------------------------------------------------------------

    def _mask_box(self) -> Optional[list]:
        segm = self.ann.get("segmentation")
        if not self.require_masks or not segm:
            return None
        box = mask_util.toBbox(mask_of(segm, self.height, self.width)).tolist()
        return box if box[2] > 0 and box[3] > 0 else None

    def _box(self) -> None:
        ann = self.ann
        raw = ann.get("bbox")
        box, was_string = _box(raw)
        usable = box is not None and all(math.isfinite(v) for v in box) and box[2] > 0 and box[3] > 0
        if usable and was_string:
            if not self.finding("numeric-string", f"bbox {raw!r} holds numbers as strings (Detectron2's mapper "
                                "cannot read them)", "converted to numbers"):
                return
            ann["bbox"] = box
        if not usable:
            why = ("the annotation has no 'bbox'" if "bbox" not in ann else
                   f"bbox {raw!r} is not [x, y, width, height] with finite numbers and width, height > 0")
            from_mask = self._mask_box()
            if from_mask is not None:
                if self.finding("box-from-mask", why, f"recomputed from the mask: {[round(v, 2) for v in from_mask]}"):
                    ann["bbox"] = from_mask
                return
            if box is None:
                self.finding("bbox", why + "; there is no mask to compute it from")
            elif any(math.isnan(v) or math.isinf(v) for v in box) or box[2] == 0 or box[3] == 0:
                self.finding("empty-box", why + "; there is no mask to compute it from (Detectron2 leaves such "
                             "boxes out, or stretches infinite ones to the image border)")
            else:
                self.finding("negative-box", f"bbox {raw!r} has a negative width or height; Detectron2 trains "
                             f"the box between x and x + w")
            return
        self._box_against_image(box)

    def _box_against_image(self, box) -> None:
        x, y, w, h = box
        tol = BORDER_TOLERANCE_PX
        if x >= -tol and y >= -tol and x + w <= self.width + tol and y + h <= self.height + tol:
            return
        inside = box_inside_fraction(box, self.width, self.height)
        where = f"bbox {box} (x1={x + w:g}, y1={y + h:g}) vs the {self.width}x{self.height} image"
        if inside == 0:
            self.finding("outside-image", f"{where}: no part of it is inside (Detectron2 clips it to nothing)")
        elif inside < MIN_INSIDE_FRACTION and "mostly-outside" not in self.kinds:  # once per annotation
            self.finding("mostly-outside", f"{where}: only {inside:.0%} of it lies inside: wrong image or wrong units?")

    def _area(self) -> None:
        if not self.for_evaluation:
            return
        value = self.ann.get("area")
        parsed, was_string = number(value)
        if parsed is not None and math.isfinite(parsed) and parsed >= 0:
            if was_string and self.finding("numeric-string", f"area {value!r} is a string", "converted to a number"):
                self.ann["area"] = parsed
            return
        segm = self.ann.get("segmentation")
        if segm:
            area = float(mask_util.area(mask_of(segm, self.height, self.width)))
        else:
            area = abs(float(self.ann["bbox"][2] * self.ann["bbox"][3]))
        why = "no 'area'" if "area" not in self.ann else f"area {value!r} is not a number >= 0"
        if self.finding("area", f"{why} (COCOeval reads it for every ground truth)", f"set to {area:g}, the mask's"):
            self.ann["area"] = area
