"""What the VIA and labelme importers share: shapes to COCO polygons, and the COCO dict they build.

A converted dataset is a plain COCO instances dict, so that it is registered, validated and
evaluated exactly as a COCO json is. Its ``info`` names, for every image and annotation, the
source record it came from (validation messages quote it) and carries the importer's warnings.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "ConversionProblem",
    "CocoBuilder",
    "DEFAULT_LABEL",
    "SOURCES_KEY",
    "WARNINGS_KEY",
    "ellipse_polygon",
    "rectangle_polygon",
    "number_list",
]

# The class of regions that carry no label (Detectron2's balloon data has none); policy.py
# reports them ("unlabeled-region").
DEFAULT_LABEL = "object"
SOURCES_KEY = "gn_det_sources"
WARNINGS_KEY = "gn_det_conversion_warnings"
# Subpixel precision of cv2.ellipse2Poly, which takes integer centers and axes.
_ELLIPSE_SHIFT = 16
_ELLIPSE_STEP_DEGREES = 5


@dataclass(frozen=True)
class ConversionProblem:
    """A record the importer could not convert (an error) or converted with a warning.

    ``record_level``: only this record is affected (--skip-invalid can drop it); otherwise the
    whole file is unusable.
    """

    kind: str
    where: str
    message: str
    record_level: bool = True
    level: str = "error"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number_list(values, what: str, minimum: int = 0) -> Tuple[Optional[List[float]], str]:
    """``(floats, "")`` or ``(None, why)`` for a list of finite numbers (at least ``minimum``)."""
    if not isinstance(values, (list, tuple)):
        return None, f"{what} must be a list of numbers, got {type(values).__name__}"
    if not all(_is_number(v) for v in values):
        bad = next(v for v in values if not _is_number(v))
        return None, f"{what} must hold finite numbers, got {bad!r}"
    if len(values) < minimum:
        return None, f"{what} has {len(values)} value(s), at least {minimum} are needed"
    return [float(v) for v in values], ""


def rectangle_polygon(x0: float, y0: float, x1: float, y1: float) -> List[float]:
    xa, xb = sorted((x0, x1))
    ya, yb = sorted((y0, y1))
    return [xa, ya, xb, ya, xb, yb, xa, yb]


def ellipse_polygon(
    cx: float, cy: float, rx: float, ry: float, theta_degrees: float = 0.0
) -> List[float]:
    """The outline of an ellipse (a circle when rx == ry) as a polygon, by OpenCV."""
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
    """Collects images and instances (label, polygons) and returns a COCO instances dict."""

    description: str
    images: List[dict] = field(default_factory=list)
    instances: List[Tuple[int, str, List[List[float]], str]] = field(default_factory=list)
    image_sources: Dict[str, str] = field(default_factory=dict)
    problems: List[ConversionProblem] = field(default_factory=list)

    def add_image(self, file_name: str, width: int, height: int, where: str) -> int:
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": width, "height": height}
        )
        self.image_sources[str(image_id)] = where
        return image_id

    def add_instance(
        self, image_id: int, label: str, polygons: Sequence[Sequence[float]], where: str
    ) -> None:
        self.instances.append((image_id, label, [list(p) for p in polygons], where))

    def error(self, kind: str, where: str, message: str, record_level: bool = True) -> None:
        self.problems.append(ConversionProblem(kind, where, message, record_level))

    def warning(self, kind: str, where: str, message: str) -> None:
        self.problems.append(ConversionProblem(kind, where, message, False, "warning"))

    @property
    def errors(self) -> List[ConversionProblem]:
        return [p for p in self.problems if p.level == "error"]

    def coco(self) -> Dict[str, Any]:
        """Categories are the labels, sorted, with ids 1..K (Detectron2 maps them to 0..K-1)."""
        labels = sorted({label for _, label, _, _ in self.instances})
        category_id = {label: i + 1 for i, label in enumerate(labels)}
        sizes = {img["id"]: (img["height"], img["width"]) for img in self.images}
        annotations, sources = [], {}
        for ann_id, (image_id, label, polygons, where) in enumerate(self.instances, start=1):
            points = np.concatenate(
                [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
            )
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            height, width = sizes[image_id]
            # The area COCOeval's area ranges use: the rasterized mask's, as for COCO itself.
            rle = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category_id[label],
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "area": float(mask_util.area(rle)),
                    "segmentation": polygons,
                    "iscrowd": 0,
                }
            )
            sources[str(ann_id)] = where
        warnings = [[p.kind, p.where, p.message] for p in self.problems if p.level == "warning"]
        return {
            "info": {
                "description": self.description,
                SOURCES_KEY: {"images": self.image_sources, "annotations": sources},
                WARNINGS_KEY: warnings,
            },
            "images": self.images,
            "annotations": annotations,
            "categories": [{"id": category_id[label], "name": label} for label in labels],
        }
