"""Numbers, boxes, polygons and RLE of COCO annotations: parsed as Detectron2 and pycocotools read
them, and what is wrong with them.

Polygons are checked for what changes what is learned: too few points, an odd count, NaN /
infinite values, no area (every point on one line through the first), nothing inside the image.
Self-crossing outlines and outlines past the border are not findings: pycocotools rasterizes
them (into the image), and that mask is what Detectron2 trains and COCOeval scores.
"""

import math
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "number",
    "polygon_values",
    "polygon_problem",
    "polygon_inside_fraction",
    "box_inside_fraction",
    "rle_problem",
    "rle_string_counts",
    "mask_of",
    "read_rle",
]

# Longest side of the canvas the inside fraction is rasterized on; coarser for huge polygons
# (e.g. normalized-vs-pixel mix-ups), where a few percent do not change the verdict.
_CANVAS_PX = 2048


def number(value) -> Tuple[Optional[float], bool]:
    """``(value as a float, was it a string)``; ``(None, False)`` when it is not a number (bool,
    None, a non-numeric string, a list). NaN and infinity come back as they are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), False
    if isinstance(value, str):
        try:
            return float(value), True
        except ValueError:
            return None, False
    return None, False


def polygon_values(polygon) -> Tuple[Optional[List[float]], str, Optional[str]]:
    """A COCO polygon ``[x1, y1, x2, y2, ...]`` read as floats: ``(values, repaired, problem)``.

    ``repaired`` names what had to be read leniently ("numeric-string", "polygon-format" for
    ``[[x, y], ...]`` pairs, or ""); ``problem`` says why it is no polygon at all."""
    if not isinstance(polygon, (list, tuple)):
        return None, "", f"is a {type(polygon).__name__}, not a list of numbers [x1, y1, x2, y2, ...]"
    repaired = ""
    if polygon and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in polygon):
        polygon = [v for p in polygon for v in p]
        repaired = "polygon-format"
    values = []
    for v in polygon:
        value, was_string = number(v)
        if value is None:
            return None, repaired, f"holds {v!r}, which is not a number"
        repaired = repaired or ("numeric-string" if was_string else "")
        values.append(value)
    return values, repaired, None


def _distinct(points: np.ndarray) -> np.ndarray:
    """Points without consecutive repeats (a closing point equal to the first included)."""
    return points[np.any(points != np.concatenate((points[-1:], points[:-1])), axis=1)]


def polygon_problem(values: Sequence[float], width: float, height: float, tolerance: float) -> Optional[str]:
    """Why a polygon (floats) yields no mask pixels of its image, or None: fewer than 3 points,
    an odd number of values, NaN / infinite values, no area, nothing inside the image."""
    if len(values) % 2:
        return f"has an odd number of coordinates ({len(values)}); they must be x, y pairs"
    points = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        return "contains NaN or infinite coordinates"
    distinct = _distinct(points)
    if len(distinct) < 3:
        return f"has {len(distinct)} distinct point(s); a polygon needs at least 3"
    offsets = distinct - distinct[0]
    fan = np.abs(offsets[:-1, 0] * offsets[1:, 1] - offsets[:-1, 1] * offsets[1:, 0]).sum()
    scale = float(np.abs(distinct).max()) + 1.0
    if fan <= 1e-9 * scale * scale:
        return "has no area (all its points lie on one line)"
    lo, hi = points.min(axis=0), points.max(axis=0)
    if hi[0] <= 0 or hi[1] <= 0 or lo[0] >= width or lo[1] >= height:
        return (f"lies wholly outside the {width}x{height} image (x in [{lo[0]:g}, {hi[0]:g}], "
                f"y in [{lo[1]:g}, {hi[1]:g}])")
    return None


def _decode(rle) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools' numpy-2 "copy keyword" DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(rle)


def polygon_inside_fraction(values: Sequence[float], width: float, height: float) -> float:
    """Share of a polygon's area (as pycocotools rasterizes it) inside the image."""
    points = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    lo = np.minimum(points.min(axis=0), 0.0)
    hi = np.maximum(points.max(axis=0), [width, height])
    scale = min(1.0, _CANVAS_PX / float((hi - lo).max()))
    canvas_w, canvas_h = (int(math.ceil(v * scale)) + 1 for v in (hi - lo))
    mask = _decode(mask_util.frPyObjects([((points - lo) * scale).ravel().tolist()], canvas_h, canvas_w))[:, :, 0]
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


def rle_string_counts(counts: str) -> np.ndarray:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString`` format), decoded
    with numpy (a crowd region's string has thousands of characters).

    Each run is a variable-length signed integer in 5-bit groups (chars offset by 48, bit 0x20 =
    more groups follow); from the third run on, values are deltas to the run two before.
    Raises ValueError on characters outside that alphabet or a value cut off mid-way.
    """
    codes = np.frombuffer(counts.encode("latin-1", "replace"), dtype=np.uint8).astype(np.int64) - 48
    if not len(codes):
        return np.zeros(0, np.int64)
    bad = np.flatnonzero((codes < 0) | (codes > 63))
    if len(bad):
        raise ValueError(f"character {counts[bad[0]]!r} at position {bad[0]} is not an RLE character ('0'..'o')")
    more = (codes & 0x20) != 0
    if more[-1]:
        raise ValueError("the string ends in the middle of a run length")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    shift = 5 * (np.arange(len(codes)) - starts[group])
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    negative = (codes[ends] & 0x10) != 0  # the last group's sign bit: sign-extend
    values[negative] -= np.left_shift(1, shift[ends][negative] + 5)
    runs = values.copy()
    runs[3::2] = np.cumsum(values[1::2])[1:]  # run i = value i + run i - 2, from the fourth run on
    runs[4::2] = np.cumsum(values[2::2])[1:]
    return runs


def read_rle(segmentation: dict) -> dict:
    """A COCO RLE as pycocotools' compressed form (``counts`` bytes)."""
    h, w = segmentation["size"]
    counts = segmentation["counts"]
    if isinstance(counts, list):
        return mask_util.frPyObjects(segmentation, h, w)
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_problem(segmentation: dict, width: int, height: int) -> Optional[str]:
    """Why a COCO RLE ``{"size": [h, w], "counts": ...}`` is malformed for an image of
    ``width`` x ``height``, or None. Counts are either a list of run lengths (uncompressed) or a
    compressed string; the runs must be non-negative and sum to h*w, which pycocotools does not
    check before decoding (a short RLE decodes to an incomplete mask)."""
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in size
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
    runs = np.asarray(runs, dtype=np.int64)
    if (runs < 0).any():
        return "RLE has a negative run length"
    if int(runs.sum()) != h * w:
        return f"RLE run lengths sum to {int(runs.sum())} pixels, but the mask has h*w = {h * w}"
    return None


def mask_of(segmentation, height: int, width: int) -> dict:
    """The instance's mask as one compressed RLE (polygons merged), as pycocotools makes it."""
    if isinstance(segmentation, dict):
        return read_rle(segmentation)
    return mask_util.merge(mask_util.frPyObjects([list(p) for p in segmentation], height, width))
