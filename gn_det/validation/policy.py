"""The dataset rule: what gn_det does with each kind of finding, decided by what Detectron2 alone
does with the same record (its loader, ``DatasetMapper(is_train=True)``, a training step).

- What Detectron2 trains on as it is, gn_det accepts: silently, or with a ``warning`` where it is
  likely a mistake.
- What Detectron2 drops on its own (empty or degenerate instances, polygons of fewer than 3
  points, annotations of unknown images), gn_det ``drop``s too, counted per kind: never a
  refusal of the dataset.
- What would crash Detectron2 mid-training, or be learned wrongly, gn_det ``repair``s where the
  repair is unambiguous (counted), and otherwise refuses (``error``), naming the records and the
  way forward (``--skip-invalid`` drops them).
- ``--strict`` makes every warning, repair and drop an error.

Each kind is decided here and only here: the checks report a kind, this table says what happens.
docs/validation.md shows the table; tests/validation/test_corpus.py checks every row against
Detectron2 itself (tests/validation/differential.py).
"""

from typing import Dict, NamedTuple

__all__ = [
    "Rule",
    "RULES",
    "OUTCOMES",
    "outcome",
    "BORDER_TOLERANCE_PX",
    "MIN_INSIDE_FRACTION",
    "DEFAULT_LABEL",
]

from ..data.formats.common import DEFAULT_LABEL

OUTCOMES = ("warning", "repair", "drop", "error")

# Slack at the image border within which a box or polygon counts as inside: annotation tools
# round coordinates (e.g. x = width + 0.5).
BORDER_TOLERANCE_PX = 1.0
# A box or polygon with less than this share of its area inside the image is probably on the
# wrong image or in the wrong units (normalized, or from a resized copy): a warning. Detectron2
# trains on its in-image part.
MIN_INSIDE_FRACTION = 0.5


class Rule(NamedTuple):
    outcome: str  # "warning", "repair", "drop" or "error" (what the default does)
    what: str  # the finding
    detectron2: str  # what Detectron2 alone does with it (tests/validation/test_corpus.py)
    action: str  # what gn_det does: the repair, the drop, or why it refuses and what to do
    # Detectron2 trains on it without an error but learns the wrong thing: the one case where
    # gn_det refuses what Detectron2 trains.
    learned_wrongly: bool = False
    # The whole file is unusable: --skip-invalid cannot drop a record to go on.
    file_level: bool = False


_FIX_FILE = "fix the file"

RULES: Dict[str, Rule] = {
    # -- the file as a whole ------------------------------------------------------------------
    "json-file": Rule("error", "the file is missing, unreadable, empty or not UTF-8",
                      "crashes", _FIX_FILE, file_level=True),
    "json-syntax": Rule("error", "not JSON, or truncated", "crashes", _FIX_FILE, file_level=True),
    "json-structure": Rule("error", "not a COCO / VIA / labelme structure (top-level 'images', "
                           "'annotations' and 'categories' lists)", "crashes", _FIX_FILE, file_level=True),
    "category": Rule("error", "a category without an integer 'id' or a 'name'; no categories; one "
                     "id listed twice with different names", "crashes, or names the class after one of them",
                     _FIX_FILE, learned_wrongly=True, file_level=True),
    "mask-format": Rule("error", "instance masks as RLE while INPUT.MASK_FORMAT is 'polygon'",
                        "crashes in its mapper", "set INPUT.MASK_FORMAT bitmask (it reads polygons and RLE)",
                        file_level=True),
    "no-masks": Rule("error", "masks are trained (MODEL.MASK_ON) but no annotation has one (a box-only "
                     "export: every 'segmentation' empty or missing)", "crashes in the mask head (no gt_masks)",
                     "set MODEL.MASK_ON False to train the boxes", file_level=True),
    "no-usable-annotation": Rule("error", "a training set with no usable (non-crowd) annotation left",
                                 "stops ('No valid data found')", "the summary counts what was dropped, by kind",
                                 file_level=True),
    # -- records that are refused (--skip-invalid drops them) --------------------------------
    "image-record": Rule("error", "an image record without 'id' or 'file_name', or not an object; two "
                         "records of different files with one id", "crashes; one id for two files: "
                         "trains one file's annotations on the other file", "refused",
                         learned_wrongly=True),
    "image-file": Rule("error", "an image file missing, unreadable or truncated", "crashes in its mapper",
                       "refused"),
    "image-size": Rule("error", "an image whose real size (EXIF rotation applied) is not the one its "
                       "record gives, and not explained by EXIF rotation", "crashes (SizeMismatchError); "
                       "VIA / labelme: trains the annotations at the wrong scale", "refused: were the "
                       "images resized after labelling?", learned_wrongly=True),
    "image-bit-depth": Rule("error", "a 16-bit or float image", "trains on it clipped to 8 bits (mostly "
                            "white)", "refused: convert the images to 8 bits per channel",
                            learned_wrongly=True),
    "annotation-record": Rule("error", "an annotation that is not an object, or has no 'image_id' or "
                              "'category_id'", "crashes", "refused"),
    "unknown-category": Rule("error", "an annotation's category_id is not in 'categories'", "crashes",
                             "refused"),
    "bbox": Rule("error", "no usable box (missing, empty, not 4 numbers) and no mask to compute one from",
                 "crashes", "refused"),
    "rle": Rule("error", "a malformed RLE, or one of another size than its image", "crashes, or "
                "decodes runs that do not cover the image", "refused", learned_wrongly=True),
    "region": Rule("error", "a VIA / labelme region that is not an instance: an open polyline or "
                   "linestrip, attributes that give several labels, a shape without coordinates",
                   "a plain converter closes the polyline into a polygon / takes the first attribute",
                   "refused: which outline or label was meant is unknown", learned_wrongly=True),
    # -- repaired (counted; --strict: an error) ----------------------------------------------
    "numeric-string": Rule("repair", "numbers written as strings (\"333.0337\") in boxes, polygons, "
                           "ids, sizes, iscrowd or area", "crashes in its mapper, or (ids) silently loses "
                           "the annotation", "converted to numbers"),
    "box-from-mask": Rule("repair", "a box missing, empty, NaN, infinite or of size <= 0 on an "
                          "instance with a valid mask", "crashes, drops the instance, or trains a box "
                          "to the image border", "recomputed from the mask (pycocotools)"),
    "annotation-id": Rule("repair", "annotation ids missing or repeated; id 0 in an evaluation set",
                          "crashes (its loader asserts unique ids); COCOeval counts a match to id 0 as "
                          "a miss", "renumbered after the largest id"),
    "image-size-missing": Rule("repair", "an image record without a usable width / height (missing, "
                               "0, negative)", "crashes", "taken from the image file's header"),
    "exif-rotated": Rule("repair", "an EXIF-rotated image whose record has its stored (unrotated) size",
                         "crashes (SizeMismatchError): it reads the image rotated",
                         "the annotations rotated as the image is, width and height swapped"),
    "file-name": Rule("repair", "a file_name with Windows separators (sub\\1.jpg) that does not exist as written",
                      "crashes (file not found)", "the file found with / or in the image root is used"),
    "ignore-flag": Rule("repair", "'ignore': 1 on an annotation (ignore regions)", "crashes (its "
                        "loader asserts 'ignore' is 0)", "made a crowd region (iscrowd 1), which "
                        "training skips and COCOeval ignores"),
    "iscrowd": Rule("repair", "iscrowd null or a string (\"0\"); missing in an evaluation set",
                    "treats every value but 0 as a crowd, so never trains it; COCOeval crashes",
                    "set to the number (null and missing: 0)"),
    "area": Rule("repair", "area missing, not a number or negative in an evaluation set",
                 "COCOeval crashes or sorts it into the wrong size range", "recomputed from the mask (or box)"),
    "polygon-format": Rule("repair", "a polygon given as [[x, y], ...] pairs, or the segmentation as one "
                           "flat [x1, y1, ...] list", "drops the instance (pairs) or crashes (flat list)",
                           "flattened / wrapped into a list of polygons"),
    "invalid-polygon": Rule("repair", "one polygon of an instance with fewer than 3 distinct points, an "
                            "odd number of coordinates, NaN / infinite values, no area, or nothing inside "
                            "the image, beside valid ones", "leaves out polygons of < 3 points itself; "
                            "a NaN coordinate crashes the process", "the polygon is left out"),
    "duplicate-category": Rule("repair", "the same category (id and name) listed twice",
                               "adds a second, never-trained class of that name", "listed once"),
    "image-data": Rule("repair", "a labelme file whose image is only embedded ('imageData')",
                       "(no loader) a plain converter finds no image file", "the image is written to "
                       "gn_det's cache and read from there"),
    # -- dropped (counted; --strict: an error) -----------------------------------------------
    "unknown-image": Rule("drop", "an annotation whose image_id is not in 'images'", "leaves it out "
                          "(its loader logs a count)", "left out"),
    "no-mask": Rule("drop", "an instance without a valid mask: segmentation missing or empty, every "
                    "polygon invalid (< 3 points, odd, NaN, no area, outside the image), an empty RLE",
                    "leaves out instances whose polygons are all < 3 points, crashes on those without "
                    "one, trains an empty mask for the rest", "left out (masks are trained: MODEL.MASK_ON)"),
    "empty-box": Rule("drop", "a box of width or height <= 0, NaN or infinite, with no mask to compute "
                      "it from", "leaves it out (filter_empty_instances), or trains a box to the image border",
                      "left out"),
    "outside-image": Rule("drop", "a box with no part inside its image", "clips it to nothing and "
                          "leaves it out", "left out"),
    "unlabeled-region": Rule("drop", "a VIA / labelme region without a label in a dataset whose other "
                             "regions have labels", "(plain converter) trains it as an extra class",
                             "left out (a dataset where no region has a label keeps one class; "
                             "--unlabeled-class names it)"),
    "ignored-label": Rule("drop", "a labelme shape labelled __ignore__ or _background_ (labelme's reserved "
                          "names for regions to leave out)", "(plain converter) trains it as a class of that name",
                          "left out"),
    # -- accepted with a warning (--strict: an error) ----------------------------------------
    "mostly-outside": Rule("warning", f"a box or polygon with less than {MIN_INSIDE_FRACTION:.0%} of its "
                           "area inside its image", "trains on its in-image part",
                           "trained as Detectron2 does; wrong image or wrong units?"),
    "negative-box": Rule("warning", "a box of negative width or height and no mask", "trains the box "
                         "between x and x + w (its transforms sort the corners)", "trained as Detectron2 does"),
    "iscrowd-value": Rule("warning", "iscrowd other than 0 / 1 (e.g. 2)", "a crowd region: not trained",
                          "a crowd region, as Detectron2 does"),
    "unused-category": Rule("warning", "a category no annotation uses", "a class of the model that is "
                            "never trained", "kept: it is still a class of the model"),
    "duplicate-category-name": Rule("warning", "two categories with one name (e.g. a Roboflow export's "
                                    "super-category)", "two classes; tables keyed by name show one",
                                    "kept as two classes"),
    "not-labelme-file": Rule("warning", "a json in a labelme folder that is not a labelme file (e.g. an "
                             "exported COCO json)", "(no loader)", "not read"),
}


def outcome(kind: str, strict: bool = False) -> str:
    """What happens to a finding of ``kind``: its rule's outcome, or "error" under ``strict``."""
    return "error" if strict else RULES[kind].outcome
