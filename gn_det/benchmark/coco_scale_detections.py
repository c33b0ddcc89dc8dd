"""Detections for a generated COCO split, as a detector's evaluation would receive them.

For every image, ``per_image`` (100, Detectron2's ``TEST.DETECTIONS_PER_IMAGE``) detections in
Detectron2's COCO result format (``image_id``, ``category_id``, ``bbox`` XYWH, ``score``,
``segmentation`` as compressed RLE with a str ``counts``, as ``instances_to_coco_json`` writes):

- most non-crowd objects are found (50 % of the small ones, 80 % medium, 90 % large): the
  object's polygons shifted and rescaled by a random amount (box IoU from ~0.3 to ~1), the right
  class 85 % of the time, a score that falls with the displacement (plus noise);
- some found twice (30 %), the copy further off and scored lower;
- the rest of the 100 are false positives: boxes anywhere, low scores, an elliptic mask inside
  the box, each labelled (as a detector's would be) half the time with a class the image shows
  and otherwise with a class drawn by COCO's class frequencies (person most often).

So AP is neither 0 nor 100 (about 30-50 on the generated val2017) and every COCOeval code path
(matches, duplicates, crowd ignores, unmatched detections, all three size ranges) is exercised.
Scores are float32 values, like a model's, so ties are as rare as in real results.
"""
import json
import os
from collections import defaultdict
from typing import Dict, List

import numpy as np

__all__ = ["make_detections", "write_detections"]

_FOUND = {"small": 0.5, "medium": 0.8, "large": 0.9}
_RIGHT_CLASS = 0.85
_DUPLICATE = 0.3


def _size_range(area: float) -> str:
    return "small" if area < 32 ** 2 else "medium" if area < 96 ** 2 else "large"


def _rle(polygons: List[List[float]], height: int, width: int) -> Dict:
    import pycocotools.mask as mask_util

    rle = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _moved(rng, ann: Dict, spread: float, width: int, height: int):
    """The object's polygons and box, shifted by ~``spread`` of its size and rescaled."""
    x, y, w, h = ann["bbox"]
    cx, cy = x + w / 2, y + h / 2
    scale = float(np.exp(rng.normal(0, spread)))
    dx, dy = rng.normal(0, spread, 2) * (w, h)
    polygons = []
    for poly in ann["segmentation"]:
        p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        p = (p - (cx, cy)) * scale + (cx + dx, cy + dy)
        p[:, 0] = p[:, 0].clip(0, width)
        p[:, 1] = p[:, 1].clip(0, height)
        polygons.append(np.round(p, 2).ravel().tolist())
    bw, bh = w * scale, h * scale
    x0, y0 = max(0.0, cx + dx - bw / 2), max(0.0, cy + dy - bh / 2)
    box = [x0, y0, min(float(width), cx + dx + bw / 2) - x0, min(float(height), cy + dy + bh / 2) - y0]
    return polygons, box


def _false_positive(rng, width: int, height: int):
    side = float(np.exp(rng.uniform(np.log(8), np.log(0.8 * min(width, height)))))
    w, h = side * float(np.exp(rng.normal(0, 0.4))), side
    w, h = min(w, width - 1.0), min(h, height - 1.0)
    x0, y0 = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
    t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    poly = np.stack([x0 + w / 2 * (1 + np.cos(t)), y0 + h / 2 * (1 + np.sin(t))], 1)
    return [np.round(poly, 2).ravel().tolist()], [x0, y0, w, h]


def make_detections(gt: Dict, seed: int = 0, per_image: int = 100) -> List[Dict]:
    """COCO-format results for the ground truth ``gt`` (a loaded instances json)."""
    from .coco_scale_data import _category_weights

    rng = np.random.default_rng(seed)
    category_ids = [c["id"] for c in gt["categories"]]
    frequency = _category_weights(len(category_ids))
    by_image = defaultdict(list)
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image[ann["image_id"]].append(ann)
    results = []
    for image in gt["images"]:
        width, height = image["width"], image["height"]
        found = []  # (polygons, box, category, score)
        for ann in by_image.get(image["id"], []):
            if rng.random() >= _FOUND[_size_range(ann["area"])]:
                continue
            copies = 2 if rng.random() < _DUPLICATE else 1
            for copy in range(copies):
                spread = float(rng.uniform(0.01, 0.15)) * (1 + copy)
                polygons, box = _moved(rng, ann, spread, width, height)
                if box[2] < 1 or box[3] < 1:
                    continue
                category = ann["category_id"] if rng.random() < _RIGHT_CLASS else int(rng.choice(category_ids))
                score = float(np.clip(1.0 - 3.0 * spread + rng.normal(0, 0.12) - 0.2 * copy, 0.02, 0.999))
                found.append((polygons, box, category, score))
        shown = sorted({a["category_id"] for a in by_image.get(image["id"], [])})
        while len(found) < per_image:
            polygons, box = _false_positive(rng, width, height)
            if shown and rng.random() < 0.5:
                category = int(rng.choice(shown))
            else:
                category = int(category_ids[rng.choice(len(category_ids), p=frequency)])
            found.append((polygons, box, category, float(0.6 * rng.beta(1.0, 4.0))))
        found.sort(key=lambda d: -d[3])
        for polygons, box, category, score in found[:per_image]:
            results.append({
                "image_id": image["id"],
                "category_id": category,
                "bbox": [round(v, 2) for v in box],
                "score": float(np.float32(score)),
                "segmentation": _rle(polygons, height, width),
            })
    return results


def write_detections(gt_json: str, path: str, seed: int = 0, per_image: int = 100, log=print) -> Dict:
    """``make_detections`` for the json ``gt_json``, written to ``path`` unless a file made
    from the same inputs is there (a stamp beside it); returns what it holds."""
    stamp_file = path + ".stamp.json"
    key = {"gt_json": os.path.abspath(gt_json), "gt_bytes": os.path.getsize(gt_json),
           "gt_mtime": int(os.path.getmtime(gt_json)), "seed": seed, "per_image": per_image, "version": 2}
    if os.path.isfile(stamp_file) and os.path.isfile(path):
        with open(stamp_file) as f:
            done = json.load(f)
        if done.get("key") == key:
            return done
    log(f"generating detections ({per_image} per image) for {gt_json} -> {path}")
    with open(gt_json) as f:
        gt = json.load(f)
    results = make_detections(gt, seed=seed, per_image=per_image)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, separators=(",", ":"))
    os.replace(path + ".tmp", path)
    done = {"key": key, "path": path, "detections": len(results), "images": len(gt["images"])}
    with open(stamp_file, "w") as f:
        json.dump(done, f, indent=1)
    return done
