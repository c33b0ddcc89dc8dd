"""Which annotations of a COCO json are surely clean: checked in bulk, with numpy over each chunk's
boxes and polygon coordinates, so that a COCO-sized json (860k annotations) costs little more
than Detectron2's own load of it.

Conservative by construction: an annotation passes only if ``AnnotationCheck`` would find
nothing in it (tests/validation/test_fast_path.py runs both on every corpus mutation); all
others go to ``AnnotationCheck``, which names what is wrong.
"""

from itertools import chain
from typing import Dict, List, Set, Tuple

import numpy as np

from .policy import BORDER_TOLERANCE_PX

__all__ = ["clean_annotations"]

_CHUNK = 1 << 14  # 16k annotations: ~40 MB of temporary arrays for COCO-like polygons
_NUMBER_TYPES = {int, float}


def _numbers_only(lists) -> bool:
    return set(map(type, chain.from_iterable(lists))) <= _NUMBER_TYPES


def _within(x0, y0, x1, y1, width, height) -> np.ndarray:
    tol = BORDER_TOLERANCE_PX
    return (x0 >= -tol) & (y0 >= -tol) & (x1 <= width + tol) & (y1 <= height + tol)


def _boxes_clean(boxes: List[list], sizes: np.ndarray) -> np.ndarray:
    if not boxes:
        return np.zeros(0, bool)
    if _numbers_only(boxes):
        b = np.array(boxes, dtype=np.float64)
    else:  # a string or a None somewhere: those boxes are not clean
        b = np.array([v if _numbers_only([v]) else [np.nan] * 4 for v in boxes], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)
        return ok & _within(b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3], sizes[:, 0], sizes[:, 1])


def _polygons_clean(segms: List[list], sizes: np.ndarray) -> np.ndarray:
    """Per annotation: every polygon a list of >= 6 (an even number of) finite numbers, inside
    the image (with the border tolerance), with an area (its points not all on one line)."""
    owners = np.repeat(np.arange(len(segms)), [len(s) for s in segms])
    polygons = list(chain.from_iterable(segms))
    if not polygons:
        return np.ones(len(segms), bool)
    structural = np.array([type(p) is list and len(p) >= 6 and not len(p) % 2 for p in polygons])
    if structural.all() and _numbers_only(polygons):
        good = polygons
    else:
        structural &= np.array([_numbers_only([p]) if ok else False for p, ok in zip(polygons, structural)])
        good = [p for p, ok in zip(polygons, structural) if ok]
    clean = structural.copy()
    if good:
        lengths = np.fromiter(map(len, good), np.int64, len(good)) // 2
        flat = np.fromiter(chain.from_iterable(good), np.float64, int(lengths.sum()) * 2)
        x, y = flat[0::2], flat[1::2]
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        ends = starts + lengths
        following = np.arange(len(x)) + 1
        following[ends - 1] = starts
        x0, y0 = np.repeat(x[starts], lengths), np.repeat(y[starts], lengths)
        with np.errstate(invalid="ignore", over="ignore"):
            cross = (x - x0) * (y[following] - y0) - (y - y0) * (x[following] - x0)
            fan = np.add.reduceat(np.abs(cross), starts)
            scale = np.maximum.reduceat(np.maximum(np.abs(x), np.abs(y)), starts) + 1.0
            size = sizes[owners[structural]]
            ok = (fan > 1e-9 * scale * scale) & np.isfinite(fan) & _within(
                np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts),
                np.maximum.reduceat(x, starts), np.maximum.reduceat(y, starts), size[:, 0], size[:, 1])
        clean[structural] = ok
    return np.logical_and.reduceat(clean, np.concatenate(([0], np.cumsum([len(s) for s in segms])[:-1]))) \
        if len(segms) else np.zeros(0, bool)


def clean_annotations(
    annotations: list,
    image_sizes: Dict[int, Tuple[int, int]],
    category_ids: Set[int],
    *,
    require_masks: bool,
    for_evaluation: bool,
) -> Tuple[np.ndarray, List[int], int]:
    """``(clean, duplicate positions, largest int id)``: ``clean[i]`` is True for an annotation
    that is surely clean. ``image_sizes`` maps the ids of usable images (whose annotations need
    no other change) to ``(width, height)``. Later annotations with an id seen before are in
    ``duplicate positions`` (their first use is kept)."""
    n = len(annotations)
    clean = np.zeros(n, bool)
    seen: Set[int] = set()
    duplicates: List[int] = []
    largest = 0
    for start in range(0, n, _CHUNK):
        part = annotations[start : start + _CHUNK]
        candidates, boxes, sizes, segms = [], [], [], []
        for k, a in enumerate(part):
            if type(a) is not dict:
                continue
            ann_id = a.get("id")
            if type(ann_id) is int:
                if ann_id in seen:
                    duplicates.append(start + k)
                    continue
                seen.add(ann_id)
                largest = max(largest, ann_id)
            else:
                continue
            size = image_sizes.get(a.get("image_id"))
            category = a.get("category_id")
            box = a.get("bbox")
            crowd = a.get("iscrowd", None if for_evaluation else 0)
            segm = a.get("segmentation")
            if (size is None or type(a.get("image_id")) is not int or type(category) is not int
                    or category not in category_ids or type(box) is not list or len(box) != 4
                    or type(crowd) not in (int, bool) or crowd not in (0, 1) or a.get("ignore")
                    or (for_evaluation and (ann_id == 0 or type(a.get("area")) not in (int, float) or not a["area"] >= 0))):
                continue
            if require_masks:
                if type(segm) is not list or not segm:
                    continue
            elif segm and (type(segm) is not list or not all(
                    type(p) is list and len(p) >= 6 and not len(p) % 2 for p in segm)):
                continue
            candidates.append(start + k)
            boxes.append(box)
            sizes.append(size)
            segms.append(segm if require_masks else [])
        if not candidates:
            continue
        sizes_arr = np.array(sizes, dtype=np.float64).reshape(-1, 2)
        ok = _boxes_clean(boxes, sizes_arr)
        if require_masks:
            ok &= _polygons_clean(segms, sizes_arr)
        clean[np.asarray(candidates)[ok]] = True
    return clean, duplicates, largest
