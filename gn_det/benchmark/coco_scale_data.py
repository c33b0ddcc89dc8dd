"""A COCO-sized dataset, generated: train2017- and val2017-sized instances jsons and image files.

What the CPU side of a COCO run costs (validation, registration, loading, evaluation) depends on
the json's size and shape, not on what the images show. This writes, from a seed,

- ``coco/annotations/instances_<split>.json``: COCO's 80 categories (ids and names as COCO's,
  1..90 with gaps), the image and annotation counts of the real split (train2017: 118,287
  images, 860,001 annotations; val2017: 5,000 and 36,781), about 0.9 % images without any
  annotation, per-image counts with COCO's long tail (1 to ~90), object sizes spread over
  small / medium / large, polygons of 4 to a few hundred vertices (more for larger objects;
  about 1 in 10 objects in several parts), coordinates with 2 decimals, ~1 % crowd
  annotations as uncompressed RLE (``{"counts": [...], "size": [h, w]}``, as COCO's crowds);
- ``coco/<split>/<12-digit id>.jpg``: one small JPEG per distinct image size (COCO's common
  sizes: 640x480, 640x427, 480x640, ...), hard-linked under every file name of that size. The
  header states the size the json says, which is all that validation reads (``PIL.Image.open``:
  size and EXIF) and what Detectron2's mapper checks after decoding; the pixels are a flat grey.

The layout is Detectron2's ``$DETECTRON2_DATASETS``: with ``DETECTRON2_DATASETS=<root>`` its
builtin names ``coco_2017_train`` / ``coco_2017_val`` read these files unchanged.
``write_split(root, spec)`` is idempotent: a split whose json and images exist for the same spec
(a stamp file holds it) is not written again.
"""
import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import Dict, Iterator, List, Tuple

import numpy as np

__all__ = [
    "CocoSizeSpec",
    "TRAIN2017",
    "VAL2017",
    "coco_categories",
    "IMAGE_SIZES",
    "write_split",
    "split_paths",
    "scaled_spec",
]

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class CocoSizeSpec:
    """The shape of one generated split. ``scaled(f)`` keeps the proportions at another size."""

    split: str
    num_images: int
    num_annotations: int
    seed: int
    crowd_fraction: float = 0.01
    empty_image_fraction: float = 0.0086  # train2017: 1,021 of 118,287 images
    multi_part_fraction: float = 0.1

    def scaled(self, fraction: float) -> "CocoSizeSpec":
        images = max(1, round(self.num_images * fraction))
        return replace(self, num_images=images,
                       num_annotations=max(1, round(self.num_annotations * fraction)))

    def validate(self) -> None:
        if self.num_images < 1 or self.num_annotations < 0:
            raise ValueError(f"{self}: need num_images >= 1 and num_annotations >= 0.")
        non_empty = self.num_images - round(self.num_images * self.empty_image_fraction)
        if self.num_annotations and self.num_annotations < non_empty:
            raise ValueError(
                f"{self}: {self.num_annotations} annotations cannot cover the {non_empty} images "
                "that should have at least one; lower empty_image_fraction or add annotations."
            )

    def key(self) -> str:
        """Changes with the spec or the generator: what the stamp file compares."""
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


TRAIN2017 = CocoSizeSpec("train2017", num_images=118_287, num_annotations=860_001, seed=2017)
VAL2017 = CocoSizeSpec("val2017", num_images=5_000, num_annotations=36_781, seed=2018)

# (width, height, weight): COCO's most common image sizes, landscape and portrait, longest side
# 640 as in COCO, plus a tail of smaller ones.
IMAGE_SIZES = (
    (640, 480, 30), (640, 427, 16), (480, 640, 8), (640, 426, 6), (640, 428, 5), (427, 640, 4),
    (640, 425, 3), (640, 424, 3), (640, 429, 2), (640, 360, 2), (640, 512, 2), (612, 612, 2),
    (500, 375, 2), (640, 640, 2), (425, 640, 1), (426, 640, 1), (640, 400, 1), (640, 383, 1),
    (640, 478, 1), (375, 500, 1), (640, 453, 1), (640, 434, 1), (500, 333, 1), (333, 500, 1),
    (640, 331, 1), (480, 360, 1), (640, 591, 1),
)
_MAX_PER_IMAGE = 95  # COCO's most crowded images hold ~90 annotations
_MAX_HARD_LINKS = 60_000  # ext4 allows 65,000 links per inode


def coco_categories() -> List[Dict]:
    """COCO's 80 thing categories: their ids (1..90 with gaps), names and supercategories."""
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    return [{"id": c["id"], "name": c["name"], "supercategory": "thing"}
            for c in COCO_CATEGORIES if c["isthing"]]


def _category_weights(n: int) -> np.ndarray:
    """person is ~30 % of COCO's annotations; the other classes follow a Zipf-like tail."""
    tail = 1.0 / (np.arange(1, n) + 2.0) ** 0.8
    return np.concatenate([[0.3], 0.7 * tail / tail.sum()])


def _per_image_counts(rng: np.random.Generator, spec: CocoSizeSpec) -> np.ndarray:
    """Annotations per image: exactly ``num_annotations`` in all, a long tail, some empty."""
    n = spec.num_images
    counts = np.zeros(n, dtype=np.int64)
    if spec.num_annotations == 0:
        return counts
    empty = round(n * spec.empty_image_fraction)
    non_empty = rng.permutation(n)[: n - empty]
    mean = spec.num_annotations / len(non_empty)
    extra = rng.negative_binomial(1.3, 1.3 / (1.3 + max(mean - 1, 1e-6)), size=len(non_empty))
    drawn = np.minimum(1 + extra, _MAX_PER_IMAGE)
    while drawn.sum() != spec.num_annotations:  # nudge random images until the total is exact
        diff = spec.num_annotations - int(drawn.sum())
        if diff > 0:
            room = np.flatnonzero(drawn < _MAX_PER_IMAGE)
            np.add.at(drawn, rng.choice(room, size=min(diff, len(room))), 1)
        else:
            room = np.flatnonzero(drawn > 1)
            pick = rng.choice(room, size=min(-diff, len(room)), replace=False)
            drawn[pick] -= 1
        drawn = np.minimum(drawn, _MAX_PER_IMAGE)
    counts[non_empty] = drawn
    return counts


def _polygons(rng: np.random.Generator, cx, cy, rx, ry, vertices) -> Tuple[np.ndarray, np.ndarray]:
    """Star-shaped (hence simple) polygons inside the ellipses (cx, cy, rx, ry), ``vertices[i]``
    points each: their points (V, 2) and each polygon's first index (plus the end)."""
    starts = np.concatenate([[0], np.cumsum(vertices)])
    owner = np.repeat(np.arange(len(vertices)), vertices)
    k = np.arange(starts[-1]) - starts[owner]
    angle = (k + rng.random(len(k)) * 0.8) * 2 * np.pi / vertices[owner]
    radius = 0.55 + 0.45 * rng.random(len(k))
    points = np.stack([cx[owner] + rx[owner] * radius * np.cos(angle),
                       cy[owner] + ry[owner] * radius * np.sin(angle)], axis=1)
    return np.round(points, 2), starts


def _shoelace(points: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Area of each polygon (points in order, polygons delimited by ``starts``)."""
    nxt = np.arange(1, len(points) + 1)
    nxt[starts[1:] - 1] = starts[:-1]  # the last point of a polygon wraps to its first
    cross = points[:, 0] * points[nxt, 1] - points[nxt, 0] * points[:, 1]
    return np.abs(np.add.reduceat(cross, starts[:-1])) / 2 if len(points) else np.zeros(0)


def _crowd_segmentation(rng, box, width, height) -> Tuple[Dict, float, List[float]]:
    """A crowd region as COCO stores it: uncompressed RLE (column-major run lengths)."""
    import pycocotools.mask as mask_util

    x, y, w, h = box
    n = 24
    cx, cy = np.array([x + w / 2]), np.array([y + h / 2])
    points, _ = _polygons(rng, cx, cy, np.array([w / 2]), np.array([h / 2]), np.array([n]))
    rle = mask_util.merge(mask_util.frPyObjects([points.ravel().tolist()], height, width))
    flat = mask_util.decode(rle).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [len(flat)]])).tolist()
    if flat[0]:
        runs = [0] + runs  # COCO's runs start with a run of zeros
    bbox = [round(float(v), 2) for v in mask_util.toBbox(rle)]
    return {"counts": runs, "size": [height, width]}, float(mask_util.area(rle)), bbox


def _annotations_of_chunk(rng, images: List[Dict], counts: np.ndarray, first_id: int,
                          spec: CocoSizeSpec, category_ids: np.ndarray) -> Iterator[Dict]:
    """The annotations of ``images`` (``counts[i]`` for image i), ids from ``first_id``."""
    total = int(counts.sum())
    if total == 0:
        return
    owner = np.repeat(np.arange(len(images)), counts)
    W = np.array([im["width"] for im in images], dtype=np.float64)[owner]
    H = np.array([im["height"] for im in images], dtype=np.float64)[owner]
    # Box side log-uniform from 8 px to 0.9x the short side; the polygon inside fills about half
    # of its box, so ~41 % of the objects are small (area < 32²), ~31 % medium, ~28 % large
    # (COCO: 41 / 34 / 24 %).
    top = 0.9 * np.minimum(W, H)
    side = np.exp(np.log(8.0) + rng.random(total) * (np.log(top) - np.log(8.0)))
    aspect = np.exp(np.clip(rng.normal(0, 0.5, total), -1.4, 1.4))
    bw, bh = np.minimum(side * np.sqrt(aspect), W - 1), np.minimum(side / np.sqrt(aspect), H - 1)
    x0, y0 = rng.random(total) * (W - bw), rng.random(total) * (H - bh)
    category = category_ids[rng.choice(len(category_ids), size=total, p=_category_weights(len(category_ids)))]
    crowd = rng.random(total) < spec.crowd_fraction

    # Parts (polygons) per annotation; each part an ellipse-bounded star inside the box.
    parts = np.where(rng.random(total) < spec.multi_part_fraction, rng.integers(2, 4, total), 1)
    part_owner = np.repeat(np.arange(total), parts)
    part_index = np.arange(len(part_owner)) - np.repeat(np.cumsum(parts) - parts, parts)
    share = 1.0 / parts[part_owner]
    prx, pry = bw[part_owner] / 2 * np.where(parts[part_owner] > 1, 0.6, 1.0), bh[part_owner] / 2
    pcx = x0[part_owner] + bw[part_owner] * share * (part_index + 0.5)
    prx = np.minimum(prx, bw[part_owner] * share / 2)
    pcy = y0[part_owner] + pry
    vertices = np.clip(np.round(np.exp(rng.normal(np.log(6 + side[part_owner] / 5), 0.35))), 4, 400).astype(np.int64)
    points, starts = _polygons(rng, pcx, pcy, prx, pry, vertices)
    area = np.bincount(part_owner, weights=_shoelace(points, starts), minlength=total)
    # Each annotation's box is its polygons' bounds: reduce per part, then per annotation.
    part_min = np.minimum.reduceat(points, starts[:-1], axis=0)
    part_max = np.maximum.reduceat(points, starts[:-1], axis=0)
    first_part = np.concatenate([[0], np.cumsum(parts)[:-1]])
    ann_min = np.minimum.reduceat(part_min, first_part, axis=0)
    ann_max = np.maximum.reduceat(part_max, first_part, axis=0)
    flat = points.ravel().tolist()

    for a in range(total):
        image = images[owner[a]]
        box = [float(ann_min[a, 0]), float(ann_min[a, 1]),
               round(float(ann_max[a, 0] - ann_min[a, 0]), 2), round(float(ann_max[a, 1] - ann_min[a, 1]), 2)]
        ann = {"id": first_id + a, "image_id": image["id"], "category_id": int(category[a]), "iscrowd": 0}
        if crowd[a]:
            segmentation, ann_area, box = _crowd_segmentation(rng, box, image["width"], image["height"])
            ann["iscrowd"] = 1
        else:
            p0 = first_part[a]
            segmentation = [flat[2 * starts[p]: 2 * starts[p + 1]] for p in range(p0, p0 + parts[a])]
            ann_area = round(float(area[a]), 2)
        ann.update(segmentation=segmentation, area=ann_area, bbox=box)
        yield ann


def _images(rng: np.random.Generator, spec: CocoSizeSpec, id_offset: int) -> List[Dict]:
    sizes = np.array([(w, h) for w, h, _ in IMAGE_SIZES])
    weights = np.array([c for _, _, c in IMAGE_SIZES], dtype=np.float64)
    chosen = rng.choice(len(sizes), size=spec.num_images, p=weights / weights.sum())
    # COCO's image ids are sparse (up to 581,929); the two splits draw from disjoint ranges.
    ids = np.sort(rng.choice(np.arange(1, 4 * spec.num_images + 1), size=spec.num_images, replace=False)) + id_offset
    return [{"id": int(i), "file_name": f"{int(i):012d}.jpg", "width": int(sizes[c][0]),
             "height": int(sizes[c][1])} for i, c in zip(ids, chosen)]


def scaled_spec(spec: CocoSizeSpec, root: str, scale: float) -> Tuple[CocoSizeSpec, str]:
    """``spec`` at ``scale`` of its size and the root it lives under: ``root`` itself at full
    size, ``root/scale_<scale>`` otherwise (same file names, so Detectron2's builtin names work)."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if scale == 1.0:
        return spec, root
    return spec.scaled(scale), os.path.join(root, f"scale_{scale:g}")


def split_paths(root: str, split: str) -> Tuple[str, str]:
    """(instances json, image directory) of ``split`` under ``root`` (Detectron2's layout)."""
    coco = os.path.join(root, "coco")
    return os.path.join(coco, "annotations", f"instances_{split}.json"), os.path.join(coco, split)


def _write_json(path: str, spec: CocoSizeSpec, images: List[Dict], rng) -> Dict[str, int]:
    """Stream the json to disk: the annotations never all sit in memory at once."""
    counts = _per_image_counts(rng, spec)
    categories = coco_categories()
    category_ids = np.array([c["id"] for c in categories])
    stats = {"images": len(images), "annotations": 0, "crowd": 0, "polygons": 0, "vertices": 0}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write('{"info":' + json.dumps({"description": f"gn_det generated {spec.split}-sized COCO",
                                          "spec": asdict(spec)}, separators=(",", ":")))
        f.write(',"licenses":[],"images":' + json.dumps(images, separators=(",", ":")))
        f.write(',"annotations":[')
        next_id, chunk = 1, 2000
        for start in range(0, len(images), chunk):
            block = images[start:start + chunk]
            anns = list(_annotations_of_chunk(rng, block, counts[start:start + chunk], next_id,
                                              spec, category_ids))
            for ann in anns:
                if ann["iscrowd"]:
                    stats["crowd"] += 1
                else:
                    stats["polygons"] += len(ann["segmentation"])
                    stats["vertices"] += sum(len(p) for p in ann["segmentation"]) // 2
            if anns:
                f.write(("," if next_id > 1 else "") + ",".join(json.dumps(a, separators=(",", ":")) for a in anns))
            next_id += len(anns)
        stats["annotations"] = next_id - 1
        f.write('],"categories":' + json.dumps(categories, separators=(",", ":")) + "}")
    os.replace(tmp, path)
    return stats


def _write_images(image_dir: str, images: List[Dict]) -> int:
    """One flat grey JPEG per size, hard-linked under every file name of that size."""
    from PIL import Image

    sources_dir = os.path.join(os.path.dirname(image_dir), "_image_sizes")
    os.makedirs(sources_dir, exist_ok=True)
    os.makedirs(image_dir, exist_ok=True)
    links: Dict[Tuple[int, int], Tuple[str, int]] = {}  # size -> (current source file, its links)
    sources = 0
    for image in images:
        size = (image["width"], image["height"])
        source, used = links.get(size, ("", _MAX_HARD_LINKS))
        if used >= _MAX_HARD_LINKS:  # first image of this size, or the file has enough links
            source = os.path.join(sources_dir, f"{os.path.basename(image_dir)}_{size[0]}x{size[1]}_{sources}.jpg")
            Image.new("RGB", size, (124, 116, 104)).save(source, quality=75)
            sources, used = sources + 1, 0
        target = os.path.join(image_dir, image["file_name"])
        if os.path.lexists(target):
            os.remove(target)
        os.link(source, target)
        links[size] = (source, used + 1)
    return sources


def write_split(root: str, spec: CocoSizeSpec, log=print) -> Dict:
    """Write ``spec``'s json and images under ``root`` (unless already there); returns the
    paths and what the split holds (images, annotations, crowd, polygons, vertices)."""
    spec.validate()
    json_file, image_dir = split_paths(root, spec.split)
    stamp = os.path.join(os.path.dirname(json_file), f".{spec.split}.stamp.json")
    if os.path.isfile(stamp) and os.path.isfile(json_file):
        with open(stamp) as f:
            done = json.load(f)
        if done.get("key") == spec.key():
            return done
    os.makedirs(os.path.dirname(json_file), exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    images = _images(rng, spec, id_offset=0 if spec.split.startswith("train") else 600_000)
    log(f"generating {spec.split}: {spec.num_images} images, {spec.num_annotations} annotations -> {json_file}")
    stats = _write_json(json_file, spec, images, rng)
    stats["distinct_image_files"] = _write_images(image_dir, images)
    done = {"key": spec.key(), "spec": asdict(spec), "json_file": json_file, "image_root": image_dir,
            "json_bytes": os.path.getsize(json_file), **stats}
    with open(stamp, "w") as f:
        json.dump(done, f, indent=1)
    return done
