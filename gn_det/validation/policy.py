"""The dataset validation policy: which findings stop a run (errors) and which only get reported
(warnings), and what is repaired automatically when the dataset is loaded.

The rule: refuse only what would crash training or evaluation, or would silently train on wrong
data; accept, with a warning, what Detectron2 and pycocotools handle correctly. ``--strict``
makes every warning an error (gn_det's behaviour before this policy); ``--skip-invalid`` drops
the records that have errors.

docs/validation.md shows this table; tests/validation/test_policy.py keeps both in step.
"""

from typing import Dict, NamedTuple

from ..data.formats.common import DEFAULT_LABEL

__all__ = ["WARNINGS", "WarningKind", "MIN_INSIDE_FRACTION", "BORDER_TOLERANCE_PX", "DEFAULT_LABEL"]

# Slack at the image border that is neither reported nor repaired: annotation tools round
# coordinates (e.g. x = width + 0.5).
BORDER_TOLERANCE_PX = 1.0
# A box or polygon with less than this share of its area inside the image is an error: it is
# almost surely on the wrong image or in the wrong units (normalized, or from a resized copy).
# With at least this share inside it is a warning and is clipped to the image.
MIN_INSIDE_FRACTION = 0.5


class WarningKind(NamedTuple):
    what: str
    repair: str  # "" when the record is used as it is


WARNINGS: Dict[str, WarningKind] = {
    "border": WarningKind(
        f"a box or polygon passes the image border by more than {BORDER_TOLERANCE_PX:g} px, with "
        f"at least {MIN_INSIDE_FRACTION:.0%} of its area inside the image",
        "clipped to the image (the polygon to its in-image part, as rasterization clips it; the "
        "box to the image)",
    ),
    "self-intersecting": WarningKind(
        "a polygon whose outline crosses or touches itself",
        "",  # pycocotools' fill of it is what the model learns and what COCOeval scores
    ),
    "iscrowd-bool": WarningKind("iscrowd given as true/false", "replaced by 1/0"),
    "extra-keys": WarningKind(
        "keys that are not part of the COCO format (annotation tools add their own)",
        "",  # Detectron2 and pycocotools ignore them
    ),
    "unused-category": WarningKind(
        "a category that no annotation uses", ""  # it still becomes a class of the model
    ),
    "no-annotations": WarningKind(
        "an image without annotations",
        "",  # kept: evaluated; left out of training when DATALOADER.FILTER_EMPTY_ANNOTATIONS
    ),
    "duplicate-category-name": WarningKind(
        "two categories with the same name (e.g. a Roboflow export's super-category)",
        "",  # both become classes; tables keyed by class name cannot tell them apart
    ),
    "not-labelme-file": WarningKind(
        "a json file in a labelme folder that is not a labelme file (e.g. an exported COCO json)",
        "",  # not read
    ),
    "unlabeled-region": WarningKind(
        "a VIA / labelme region without a label",
        f"given the class {DEFAULT_LABEL!r}",
    ),
}
