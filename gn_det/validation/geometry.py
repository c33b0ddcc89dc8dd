"""Geometric checks of COCO segmentations: polygons (simple, non-degenerate) and RLE (well formed)."""

import functools
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "polygon_problem",
    "polygon_points",
    "polygon_outside",
    "polygon_degenerate",
    "polygon_self_intersection",
    "rle_problem",
    "rle_string_counts",
]

# Pairs of edges tested at once in the self-intersection test (bounds memory for huge polygons).
_EDGE_PAIR_BLOCK = 1 << 20


def _star_shaped_about_centroid(points: np.ndarray) -> bool:
    """A sufficient test for simplicity, O(n): seen from the vertex centroid, the vertices turn
    strictly one way, by less than pi per edge and by exactly 2 pi in total. Then every edge lies
    in its own angular sector, sectors of non-adjacent edges are disjoint, and the polygon is
    simple. Most annotated outlines (convex or nearly) pass; the rest get the full O(n^2) test."""
    offsets = points - points.mean(axis=0)
    angles = np.arctan2(offsets[:, 1], offsets[:, 0])
    steps = np.diff(angles, append=angles[:1])
    steps = (steps + np.pi) % (2 * np.pi) - np.pi  # each step in [-pi, pi)
    total = float(steps.sum())
    if steps.min() > 1e-9:
        return abs(total - 2 * np.pi) < 1e-6
    if steps.max() < -1e-9:
        return abs(total + 2 * np.pi) < 1e-6
    return False


@functools.lru_cache(maxsize=256)
def _non_adjacent_pairs(n: int) -> np.ndarray:
    """n x n bool mask of edge pairs (i < j) that share no vertex in an n-gon."""
    mask = np.triu(np.ones((n, n), dtype=bool), k=2)
    mask[0, n - 1] = False  # the last edge is adjacent to the first
    return mask


def _first_crossing(points: np.ndarray) -> Optional[tuple]:
    """(i, j) of the first pair of non-adjacent edges that intersect or touch, else None.

    Edge k joins points[k] and points[(k + 1) % n]. Non-adjacent edges of a simple polygon share
    no point at all, so any contact (proper crossing, a vertex on another edge, collinear overlap)
    counts. Adjacent edges share one vertex; they are only tested for folding back onto each other.
    """
    n = len(points)
    following = np.concatenate((points[1:], points[:1]))  # np.roll is slow on tiny arrays
    ax, ay = points[:, 0], points[:, 1]
    bx, by = following[:, 0], following[:, 1]
    scale = float(np.abs(points).max()) + 1.0
    eps = 1e-12 * scale * scale  # orientation tests are exact up to float rounding of coordinates

    # Spikes: consecutive edges that are collinear and point in opposite directions.
    dx, dy = bx - ax, by - ay
    ndx, ndy = np.concatenate((dx[1:], dx[:1])), np.concatenate((dy[1:], dy[:1]))
    fold = (np.abs(dx * ndy - dy * ndx) <= eps) & ((dx * ndx + dy * ndy) < 0)
    if fold.any():
        k = int(np.argmax(fold))
        return k, (k + 1) % n

    # cross(d_i, p - a_i) for every edge i and point p, as matrix products: row i, column j.
    d = np.stack([dx, -dy], axis=1)  # (n, 2)
    a = np.stack([ay, ax], axis=1)
    b = np.stack([by, bx], axis=1)
    c = dx * ay - dy * ax  # cross(d_i, a_i) offset
    step = max(1, _EDGE_PAIR_BLOCK // n)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        pairs = _non_adjacent_pairs(n)[rows]
        o_aj = d[rows] @ a.T - c[rows, None]  # side of a_j relative to edge i
        o_bj = d[rows] @ b.T - c[rows, None]
        o_ai = a[rows] @ d.T - c[None, :]  # side of a_i relative to edge j
        o_bi = b[rows] @ d.T - c[None, :]
        z_aj, z_bj, z_ai, z_bi = (np.abs(o) <= eps for o in (o_aj, o_bj, o_ai, o_bi))
        any_zero = z_aj | z_bj | z_ai | z_bi
        hit = (o_aj * o_bj < 0) & (o_ai * o_bi < 0) & ~any_zero & pairs
        if (any_zero & pairs).any():
            # Collinear contact: an endpoint of one edge lying on the other edge (in its box).
            def within(px, py, qx, qy, rx, ry):
                return (
                    (np.minimum(px, qx) <= rx)
                    & (rx <= np.maximum(px, qx))
                    & (np.minimum(py, qy) <= ry)
                    & (ry <= np.maximum(py, qy))
                )

            ai_x, ai_y, bi_x, bi_y = ax[rows, None], ay[rows, None], bx[rows, None], by[rows, None]
            aj_x, aj_y, bj_x, bj_y = ax[None, :], ay[None, :], bx[None, :], by[None, :]
            touch = (
                (z_aj & within(ai_x, ai_y, bi_x, bi_y, aj_x, aj_y))
                | (z_bj & within(ai_x, ai_y, bi_x, bi_y, bj_x, bj_y))
                | (z_ai & within(aj_x, aj_y, bj_x, bj_y, ai_x, ai_y))
                | (z_bi & within(aj_x, aj_y, bj_x, bj_y, bi_x, bi_y))
            )
            hit |= touch & pairs
        if hit.any():
            i, j = np.argwhere(hit)[0]
            return int(i) + start, int(j)
    return None


def polygon_points(coords: Sequence) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """``(points, None)``: a COCO polygon ``[x1, y1, x2, y2, ...]`` as an (n, 2) float array, or
    ``(None, why)`` when it is not an even number (>= 6) of finite numbers."""
    if not isinstance(coords, (list, tuple)):
        return None, f"must be a list of numbers [x1, y1, x2, y2, ...], got {type(coords).__name__}"
    if len(coords) == 0:
        return None, "is empty; a polygon needs at least 3 points (6 numbers)"
    values = np.asarray(coords)
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        return None, "must be a flat list of numbers [x1, y1, x2, y2, ...]"
    if len(coords) % 2:
        return None, f"has an odd number of coordinates ({len(coords)}); it must be x, y pairs"
    if len(coords) < 6:
        return None, f"has {len(coords) // 2} point(s); a polygon needs at least 3"
    points = values.astype(np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        return None, "contains NaN or infinite coordinates"
    return points, None


def polygon_outside(
    points: np.ndarray, width: float, height: float, tolerance: float = 1.0
) -> Optional[str]:
    """How the polygon passes the image border by more than ``tolerance`` px, or None."""
    lo = points.min(axis=0)
    hi = points.max(axis=0)
    if (
        lo[0] < -tolerance
        or lo[1] < -tolerance
        or hi[0] > width + tolerance
        or hi[1] > height + tolerance
    ):
        return (
            f"extends outside the {width}x{height} image (x in [{lo[0]:g}, {hi[0]:g}], y in "
            f"[{lo[1]:g}, {hi[1]:g}]); coordinates must lie in [0, width] x [0, height]"
        )
    return None


def polygon_degenerate(points: np.ndarray) -> Optional[str]:
    """Why the polygon has no area (fewer than 3 distinct vertices, all on one line), or None.
    Repeated consecutive vertices, including a closing vertex equal to the first, are ignored
    as annotation tools emit them."""
    points = _distinct(points)
    if len(points) < 3:
        return f"has {len(points)} distinct point(s); a polygon needs at least 3"
    offsets = points - points[0]
    far = offsets[np.argmax(np.abs(offsets).sum(axis=1))]
    scale = float(np.abs(points).max()) + 1.0
    if np.abs(far[0] * offsets[:, 1] - far[1] * offsets[:, 0]).max() <= 1e-9 * scale * scale:
        return "has zero area (all points on one line)"
    return None


def _distinct(points: np.ndarray) -> np.ndarray:
    return points[np.any(points != np.concatenate((points[-1:], points[:-1])), axis=1)]


def polygon_self_intersection(points: np.ndarray) -> Optional[str]:
    """Which two edges of a (non-degenerate) polygon cross or touch, or None if it is simple."""
    points = _distinct(points)
    crossing = None if _star_shaped_about_centroid(points) else _first_crossing(points)
    if crossing is None:
        return None
    i, j = crossing
    n = len(points)

    def edge(k):
        p, q = points[k], points[(k + 1) % n]
        return f"({p[0]:g},{p[1]:g})-({q[0]:g},{q[1]:g})"

    return f"is self-intersecting: edge {edge(i)} meets edge {edge(j)}"


def polygon_problem(
    coords: Sequence, width: float, height: float, tolerance: float = 1.0
) -> Optional[str]:
    """Why a COCO polygon ``[x1, y1, x2, y2, ...]`` (pixels) is not strictly valid, or None.

    Strictly valid (``--strict``): an even number (>= 6) of finite numbers, inside the image
    (``tolerance`` pixels of slack), at least 3 distinct vertices, non-zero area, and simple (no
    two edges cross or touch except consecutive edges at their shared vertex). The default
    policy (policy.py) accepts border-crossing and self-intersecting polygons with a warning;
    the checks one by one: polygon_points, polygon_outside, polygon_degenerate,
    polygon_self_intersection.
    """
    points, problem = polygon_points(coords)
    if problem:
        return problem
    problem = polygon_outside(points, width, height, tolerance) or polygon_degenerate(points)
    if problem:
        return problem
    crossing = polygon_self_intersection(points)
    return crossing and (
        crossing
        + "; a valid polygon is simple (split it into several polygons of the same annotation)"
    )


def rle_string_counts(counts: str) -> List[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString`` format).

    Each run is a variable-length signed integer in 5-bit groups (chars offset by 48, bit 0x20 =
    more groups follow); from the third run on, values are deltas to the run two before.
    Raises ValueError on characters outside that alphabet or a value cut off mid-way.
    """
    runs: List[int] = []
    pos = 0
    n = len(counts)
    while pos < n:
        value = 0
        shift = 0
        more = True
        while more:
            if pos >= n:
                raise ValueError("the string ends in the middle of a run length")
            c = ord(counts[pos]) - 48
            if c < 0 or c > 63:
                raise ValueError(
                    f"character {counts[pos]!r} at position {pos} is not an RLE character ('0'..'o')"
                )
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and (c & 0x10):
                value -= 1 << shift  # sign-extend
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_problem(segmentation: dict, width: int, height: int) -> Optional[str]:
    """Why a COCO RLE ``{"size": [h, w], "counts": ...}`` is malformed for an image of
    ``width`` x ``height``, or None. Counts are either a list of run lengths (uncompressed) or a
    compressed string; the runs must be non-negative and sum to h*w, which pycocotools does not
    check before decoding (a short RLE decodes to uninitialized memory)."""
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        return f"RLE 'size' must be [height, width] integers, got {size!r}"
    h, w = size
    if (h, w) != (height, width):
        return f"RLE size [{h}, {w}] differs from the image's [height, width] = [{height}, {width}]"
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return "uncompressed RLE 'counts' must be a list of integers"
        runs = counts
    elif isinstance(counts, (str, bytes)):
        text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
        try:
            runs = rle_string_counts(text)
        except ValueError as e:
            return f"malformed compressed RLE counts: {e}"
    else:
        return f"RLE 'counts' must be a list of run lengths or a compressed string, got {type(counts).__name__}"
    if any(r < 0 for r in runs):
        return "RLE has a negative run length"
    total = sum(runs)
    if total != h * w:
        return f"RLE run lengths sum to {total} pixels, but the mask has h*w = {h * w}"
    try:
        rle = (
            mask_util.frPyObjects(segmentation, h, w)
            if isinstance(counts, list)
            else dict(segmentation)
        )
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
        with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning
            warnings.simplefilter("ignore", DeprecationWarning)
            mask_util.decode(rle)
    except (ValueError, TypeError, OverflowError) as e:
        return f"pycocotools cannot decode the RLE: {e}"
    return None
