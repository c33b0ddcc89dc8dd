"""One COCO annotation against its image: its error, or its warnings with their repairs (policy.py)."""

import math
from typing import List, Optional, Tuple

from .border import box_inside_fraction, clip_box, clip_polygon, polygon_inside_fraction
from .geometry import (
    polygon_degenerate,
    polygon_outside,
    polygon_points,
    polygon_self_intersection,
    rle_problem,
)
from .policy import BORDER_TOLERANCE_PX, MIN_INSIDE_FRACTION

__all__ = ["annotation_findings"]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def annotation_findings(ann: dict, img: dict, warnings: List[tuple]) -> Optional[Tuple[str, str]]:
    """The annotation's error ``(kind, message)``, or None; its warnings are appended to
    ``warnings`` as ``(kind, message, repair description, function applying the repair)``."""
    width, height = img["width"], img["height"]
    iscrowd = ann.get("iscrowd", 0)
    if isinstance(iscrowd, bool):
        warnings.append(
            (
                "iscrowd-bool",
                f"iscrowd is {iscrowd!r}, a boolean; COCO uses 0 or 1",
                f"iscrowd set to {int(iscrowd)}",
                lambda: ann.__setitem__("iscrowd", int(iscrowd)),
            )
        )
    elif iscrowd not in (0, 1) or isinstance(iscrowd, float):
        return "iscrowd", f"iscrowd must be 0 or 1 (COCO), got {iscrowd!r}"
    bbox = ann["bbox"]
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(_is_number(v) for v in bbox)
    ):
        return "bbox", f"bbox must be [x, y, width, height] with 4 finite numbers, got {bbox!r}"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "bbox", f"bbox {bbox} has non-positive width or height; both must be > 0"
    tol = BORDER_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        outside = (
            f"bbox {bbox} (x0={x:g}, y0={y:g}, x1={x + w:g}, y1={y + h:g}) passes the border "
            f"of the {width}x{height} image"
        )
        inside = box_inside_fraction(bbox, width, height)
        if inside < MIN_INSIDE_FRACTION:
            return "bbox", (
                f"{outside}: only {inside:.0%} of it lies inside (less than "
                f"{MIN_INSIDE_FRACTION:.0%}: wrong image or wrong units?); it must satisfy "
                "0 <= x, 0 <= y, x+w <= width, y+h <= height"
            )
        clipped = clip_box(bbox, width, height)
        warnings.append(
            (
                "border",
                f"{outside} ({inside:.0%} inside)",
                f"box clipped to {[round(v, 2) for v in clipped]}",
                lambda: ann.__setitem__("bbox", clipped),
            )
        )
    if "area" in ann and (not _is_number(ann["area"]) or ann["area"] < 0):
        return "area", f"area must be a finite number >= 0, got {ann['area']!r}"
    if "segmentation" not in ann:
        return None
    segm = ann["segmentation"]
    if isinstance(segm, dict):
        problem = rle_problem(segm, width, height)
        return ("rle", problem) if problem else None
    if isinstance(segm, list):
        if not segm:
            return (
                "polygon",
                "segmentation is an empty list; give at least one polygon [[x1, y1, x2, y2, x3, y3, ...]]",
            )
        if all(_is_number(v) for v in segm):
            return (
                "polygon",
                "segmentation must be a list of polygons [[x1, y1, ...], ...], not a single flat list",
            )
        for k, poly in enumerate(segm):
            which = f"polygon {k} of {len(segm)}"
            points, problem = polygon_points(poly)
            if problem:
                return "polygon", f"{which} {problem}"
            problem = polygon_degenerate(points)
            if problem:
                return "polygon", f"{which} {problem}"
            outside = polygon_outside(points, width, height, tolerance=BORDER_TOLERANCE_PX)
            if outside:
                inside = polygon_inside_fraction(points, width, height)
                if inside < MIN_INSIDE_FRACTION:
                    return "polygon", (
                        f"{which} {outside}; only {inside:.0%} of its area lies inside (less "
                        f"than {MIN_INSIDE_FRACTION:.0%}: wrong image or wrong units?)"
                    )
                clipped = clip_polygon(points, width, height).ravel().tolist()
                warnings.append(
                    (
                        "border",
                        f"{which} {outside.split(';')[0]} ({inside:.0%} of its area inside)",
                        "polygon clipped to the image",
                        lambda k=k, clipped=clipped: segm.__setitem__(k, clipped),
                    )
                )
            crossing = polygon_self_intersection(points)
            if crossing:
                warnings.append(
                    (
                        "self-intersecting",
                        f"{which} {crossing}; pycocotools' fill of it is what is learned and scored",
                        "",
                        None,
                    )
                )
        return None
    return (
        "segmentation",
        f"segmentation must be a list of polygons or an RLE object, got {type(segm).__name__}",
    )
