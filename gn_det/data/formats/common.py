"""What the VIA and labelme importers share: shapes to COCO polygons, and the COCO dict they build.

A converted dataset is a plain COCO instances dict, so that it is registered, validated and
evaluated exactly as a COCO json is. Its ``info`` names, for every image and annotation, the
source record it came from (validation messages quote it).

Every region with coordinates becomes an instance as it is, degenerate ones included (a 0 x 0
rect, a point): the COCO checks then drop them as Detectron2 would, counted. What the importer
itself decides (a region without a label, an open polyline, numbers as strings) goes through
``report(kind, where, message, repair) -> outcome``, the dataset rule of
gn_det/validation/policy.py: the region is converted only when the outcome lets it.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "ConversionProblem",
    "CocoBuilder",
    "DEFAULT_LABEL",
    "SOURCES_KEY",
    "Report",
    "ellipse_polygon",
    "rectangle_polygon",
    "number_list",
]

# The class of regions when no region of a dataset has a label (Detectron2's balloon data);
# --unlabeled-class names it.
DEFAULT_LABEL = "object"
SOURCES_KEY = "gn_det_sources"
# Subpixel precision of cv2.ellipse2Poly, which takes integer centers and axes.
_ELLIPSE_SHIFT = 16
_ELLIPSE_STEP_DEGREES = 5

Report = Callable[..., str]  # report(kind, where, message, repair="") -> outcome


@dataclass(frozen=True)
class ConversionProblem:
    """A finding of the importer, with the outcome the rule gave it ("warning", "repair",
    "drop" or "error"). ``file_level``: the whole file is unusable."""

    kind: str
    where: str
    message: str
    outcome: str = "error"
    repair: str = ""
    file_level: bool = False


def number_list(values, what: str, minimum: int = 0) -> Tuple[Optional[List[float]], str, bool]:
    """``(floats, "", had strings)`` or ``(None, why, False)`` for a list of numbers (numeric
    strings read as numbers; NaN kept: the COCO checks judge it)."""
    if not isinstance(values, (list, tuple)):
        return None, f"{what} must be a list of numbers, got {type(values).__name__}", False
    out, strings = [], False
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
            continue
        try:
            out.append(float(v))
            strings = strings or isinstance(v, str)
        except (TypeError, ValueError):
            return None, f"{what} must hold numbers, got {v!r}", False
        if not isinstance(v, str):
            return None, f"{what} must hold numbers, got {v!r}", False
    if len(out) < minimum:
        return None, f"{what} has {len(out)} value(s), at least {minimum} are needed", False
    return out, "", strings


def rectangle_polygon(x0: float, y0: float, x1: float, y1: float) -> List[float]:
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    return [xa, ya, xb, ya, xb, yb, xa, yb]


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta_degrees: float = 0.0) -> List[float]:
    """The outline of an ellipse (a circle when rx == ry) as a polygon, by OpenCV; radius 0: the
    center repeated (no area: the COCO checks drop it)."""
    if rx <= 0 or ry <= 0:
        return [cx, cy] * 4
    s = _ELLIPSE_SHIFT
    points = cv2.ellipse2Poly(
        (int(round(cx * s)), int(round(cy * s))),
        (max(1, int(round(rx * s))), max(1, int(round(ry * s)))),
        int(round(theta_degrees)),
        0,
        360,
        _ELLIPSE_STEP_DEGREES,
    )
    return (points.astype(np.float64) / s).ravel().tolist()


@dataclass
class CocoBuilder:
    """Collects images and instances (label, polygons) and returns a COCO instances dict.

    ``report`` is the dataset rule (see the module docstring); every finding is also kept in
    ``problems``. Instances without a label (``label`` None) are resolved by ``coco()``: left out
    when other instances have labels, else all given ``unlabeled_class``.
    """

    description: str
    report: Report
    unlabeled_class: str = DEFAULT_LABEL
    images: List[dict] = field(default_factory=list)
    instances: List[Tuple[int, Optional[str], List[List[float]], str]] = field(default_factory=list)
    image_sources: Dict[str, str] = field(default_factory=dict)
    problems: List[ConversionProblem] = field(default_factory=list)
    open_shapes: set = field(default_factory=set)  # indices of instances drawn as open lines
    records_in: int = 0  # instances (regions, or labelme shape groups) read from the source
    images_in: int = 0
    unlabeled_dropped: int = 0
    ignored: int = 0  # labelme shapes labelled __ignore__ / _background_, left out
    _coco: Optional[Dict[str, Any]] = field(default=None, repr=False)

    def add_image(self, file_name: str, width: int, height: int, where: str) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        self.image_sources[str(image_id)] = where
        return image_id

    def add_instance(self, image_id: int, label: Optional[str], polygons: Sequence[Sequence[float]], where: str,
                     open_shape: bool = False) -> None:
        """``label`` None: no label; ``open_shape``: an unlabelled open line, refused unless it is
        left out as unlabelled."""
        if open_shape:
            self.open_shapes.add(len(self.instances))
        self.instances.append((image_id, label, [list(p) for p in polygons], where))

    def finding(self, kind: str, where: str, message: str, repair: str = "", file_level: bool = False) -> str:
        """Report a finding (``file_level``: the source as a whole is unusable); its outcome."""
        outcome = self.report(kind, where, message, repair)
        self.problems.append(ConversionProblem(kind, where, message, outcome, repair if outcome == "repair" else "",
                                               file_level))
        return outcome

    def error(self, kind: str, where: str, message: str, record_level: bool = True) -> None:
        self.finding(kind, where, message, file_level=not record_level)

    @property
    def errors(self) -> List[ConversionProblem]:
        return [p for p in self.problems if p.outcome == "error"]

    def _resolve_labels(self) -> List[tuple]:
        labelled = any(label is not None for _, label, _, _ in self.instances)
        kept = []
        for k, (image_id, label, polygons, where) in enumerate(self.instances):
            if not labelled and k in self.open_shapes:
                self.finding("region", where, "an open line is not an outline: closing it into a polygon may not be "
                             "what was drawn; redraw it as a polygon")
                continue
            if not labelled:
                kept.append((image_id, self.unlabeled_class, polygons, where))
                continue
            if label is not None:
                kept.append((image_id, label, polygons, where))
                continue
            self.finding("unlabeled-region", where, "the region has no label, while the other regions of the "
                         "dataset have one; it would otherwise become a class of its own")
            self.unlabeled_dropped += 1
        return kept

    def coco(self) -> Dict[str, Any]:
        """Categories are the labels, sorted, with ids 1..K (Detectron2 maps them to 0..K-1).
        Built once (the label findings are reported once)."""
        if self._coco is None:
            self._coco = self._build()
        return self._coco

    def _build(self) -> Dict[str, Any]:
        instances = self._resolve_labels()
        labels = sorted({label for _, label, _, _ in instances})
        category_id = {label: i + 1 for i, label in enumerate(labels)}
        sizes = {img["id"]: (img["height"], img["width"]) for img in self.images}
        annotations, sources = [], {}
        for ann_id, (image_id, label, polygons, where) in enumerate(instances, start=1):
            points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            height, width = sizes[image_id]
            # The area COCOeval's area ranges use: the rasterized mask's, as for COCO itself.
            valid = [p for p in polygons if len(p) >= 6 and np.isfinite(p).all()]
            area = float(mask_util.area(mask_util.merge(mask_util.frPyObjects(valid, height, width)))) if valid else 0.0
            annotations.append({
                "id": ann_id,
                "image_id": image_id,
                "category_id": category_id[label],
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": area,
                "segmentation": polygons,
                "iscrowd": 0,
            })
            sources[str(ann_id)] = where
        return {
            "info": {"description": self.description,
                     SOURCES_KEY: {"images": self.image_sources, "annotations": sources}},
            "images": self.images,
            "annotations": annotations,
            "categories": [{"id": category_id[label], "name": label} for label in labels],
        }


def polygon_coordinates(xs, ys, what: str, where: str, builder: CocoBuilder,
                        names: Tuple[str, str] = ("x", "y")) -> Optional[List[float]]:
    """Interleaved x, y values of a region (numeric strings converted as the rule allows), or
    None after reporting why not; ``names`` are the source's names of the two lists."""
    x, why_x, x_strings = number_list(xs, names[0])
    y, why_y, y_strings = number_list(ys, names[1])
    if x is None or y is None:
        builder.finding("region", where, why_x or why_y)
        return None
    if len(x) != len(y):
        builder.finding("region", where, f"{names[0]} has {len(x)} values but {names[1]} has {len(y)}")
        return None
    if (x_strings or y_strings) and builder.finding(
            "numeric-string", where, f"{what} coordinates are numbers written as strings", "converted to numbers") != "repair":
        return None
    return [v for xy in zip(x, y) for v in xy]


