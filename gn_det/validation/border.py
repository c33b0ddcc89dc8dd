"""Boxes and polygons that pass the image border: how much of them lies inside, and clipping.

Detectron2 and pycocotools rasterize a polygon into its image, so only the in-image part of a
border-crossing polygon is ever learned or scored; clipping it to the image when the dataset is
loaded keeps that mask (up to pycocotools snapping the new vertices to its 1/5 px grid: a pixel
or two along the cut edges) and makes the outline and box agree with what is learned.
"""

import math
import warnings
from typing import List, Sequence

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["polygon_inside_fraction", "box_inside_fraction", "clip_polygon", "clip_box"]

# Longest side of the canvas the inside fraction is rasterized on; coarser for huge polygons
# (e.g. normalized-vs-pixel mix-ups), where a few percent do not change the verdict.
_CANVAS_PX = 2048


def _rasterize(points: np.ndarray, height: int, width: int) -> np.ndarray:
    rle = mask_util.frPyObjects([points.ravel().tolist()], height, width)
    with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(rle)[:, :, 0]


def polygon_inside_fraction(points: np.ndarray, width: float, height: float) -> float:
    """Share of the polygon's area (as pycocotools rasterizes it) inside the image."""
    lo = np.minimum(points.min(axis=0), 0.0)
    hi = np.maximum(points.max(axis=0), [width, height])
    scale = min(1.0, _CANVAS_PX / float((hi - lo).max()))
    canvas_w, canvas_h = (int(math.ceil(v * scale)) + 1 for v in (hi - lo))
    mask = _rasterize((points - lo) * scale, canvas_h, canvas_w)
    total = int(mask.sum())
    if total == 0:
        return 0.0
    x0, y0 = (int(round(-v * scale)) for v in lo)
    x1, y1 = int(round((width - lo[0]) * scale)), int(round((height - lo[1]) * scale))
    return float(mask[y0:y1, x0:x1].sum()) / total


def box_inside_fraction(box: Sequence[float], width: float, height: float) -> float:
    """Share of the area of ``[x, y, w, h]`` (w, h > 0) inside the image."""
    x, y, w, h = box
    inside_w = max(0.0, min(x + w, width) - max(x, 0.0))
    inside_h = max(0.0, min(y + h, height) - max(y, 0.0))
    return inside_w * inside_h / (w * h)


def clip_box(box: Sequence[float], width: float, height: float) -> List[float]:
    """``[x, y, w, h]`` cut to the image."""
    x, y, w, h = box
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, width), min(y + h, height)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def clip_polygon(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """The polygon cut to the image rectangle, one border at a time (Sutherland-Hodgman).

    For a concave polygon whose in-image part falls apart in pieces, the result joins the
    pieces along the border with edges of zero width, which enclose no area: rasterized, it
    is the same mask (tests/validation/test_border.py compares them).
    """
    pts = [tuple(p) for p in np.asarray(points, dtype=np.float64)]
    for axis, bound, keep_below in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):

        def inside(p):
            return p[axis] <= bound if keep_below else p[axis] >= bound

        def crossing(p, q):
            t = (bound - p[axis]) / (q[axis] - p[axis])
            point = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
            point[axis] = bound  # exactly on the border, not off by rounding
            return tuple(point)

        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(crossing(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(crossing(prev, cur))
        pts = out
        if not pts:
            break
    return np.asarray(pts, dtype=np.float64).reshape(-1, 2)
