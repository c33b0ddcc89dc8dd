"""A deterministic synthetic instance-segmentation dataset: coloured shapes on textured backgrounds.

Every image is drawn from a seed, so the same ``ShapesSpec`` always gives the same bytes. Shapes
(circles, squares, triangles, stars; rotated, mildly stretched, of varied size and colour) are
painted one after another, so later shapes occlude earlier ones. The ground-truth mask of an
instance is exactly the set of pixels painted with its colour that no later shape covered (shapes
are filled without anti-aliasing, so no pixel is shared); placements that would hide too much of
an earlier instance are redrawn, so every instance stays recognisable.

The split is written as a COCO json (RLE masks, ``bbox``/``area`` of the visible part) plus PNG
images into a directory whose name includes a hash of the spec; a finished directory is never
rewritten. Shapes are drawn with OpenCV, masks encoded with pycocotools.
"""
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["SHAPE_CLASSES", "ShapesSpec", "generate_shapes_split", "split_dir", "draw_shapes_image"]

logger = logging.getLogger(__name__)

# Bumped whenever the drawing code changes, so caches of older versions are not reused.
GENERATOR_VERSION = 1
SHAPE_CLASSES = ("circle", "square", "triangle", "star")


@dataclass(frozen=True)
class ShapesSpec:
    """What one split contains. Sizes are in pixels; the image is ``height x width``.

    ``radius`` is a shape's circumradius before stretching; ``min_visible_fraction`` is the least
    part of an instance (in its own pixels) that later shapes may leave uncovered.
    """

    num_images: int
    seed: int
    height: int = 160
    width: int = 160
    min_shapes: int = 2
    max_shapes: int = 5
    min_radius: float = 12.0
    max_radius: float = 38.0
    max_stretch: float = 1.25
    min_visible_fraction: float = 0.5
    min_visible_pixels: int = 40
    background_noise: float = 12.0
    classes: Tuple[str, ...] = SHAPE_CLASSES

    def __post_init__(self):
        unknown = [c for c in self.classes if c not in SHAPE_CLASSES]
        if unknown:
            raise ValueError(f"ShapesSpec.classes has unknown shapes {unknown}; valid: {SHAPE_CLASSES}")
        if not (0 < self.min_shapes <= self.max_shapes):
            raise ValueError(
                f"ShapesSpec needs 0 < min_shapes <= max_shapes, got {self.min_shapes}, {self.max_shapes}"
            )
        if not (0 < self.min_radius <= self.max_radius):
            raise ValueError(
                f"ShapesSpec needs 0 < min_radius <= max_radius, got {self.min_radius}, {self.max_radius}"
            )
        if self.num_images < 1:
            raise ValueError(f"ShapesSpec.num_images must be >= 1, got {self.num_images}")

    def fingerprint(self) -> str:
        """Short hash of the spec and generator version: names the cache directory."""
        payload = json.dumps({"v": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:10]


def _regular_polygon(num_corners: int, inner_ratio: Optional[float] = None) -> np.ndarray:
    """Unit-circumradius corners, shape (K, 2); a star alternates outer and inner corners."""
    if inner_ratio is None:
        angles = np.arange(num_corners) * 2 * np.pi / num_corners
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    angles = np.arange(2 * num_corners) * np.pi / num_corners
    radii = np.where(np.arange(2 * num_corners) % 2 == 0, 1.0, inner_ratio)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


_OUTLINES = {
    "square": _regular_polygon(4),
    "triangle": _regular_polygon(3),
    "star": _regular_polygon(5, inner_ratio=0.5),
}


def _shape_mask(kind: str, center, radius: float, angle: float, stretch: float, height: int, width: int):
    """Boolean (height, width) mask of one filled shape, drawn without anti-aliasing."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    axes = np.array([radius * stretch, radius / stretch])
    if kind == "circle":
        cv2.ellipse(
            canvas, (int(round(center[0])), int(round(center[1]))),
            (max(1, int(round(axes[0]))), max(1, int(round(axes[1])))),
            float(np.degrees(angle)), 0, 360, 1, thickness=-1, lineType=cv2.LINE_8,
        )
    else:
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = (_OUTLINES[kind] * axes) @ rotation.T + np.asarray(center)
        cv2.fillPoly(canvas, [np.round(corners).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _background(rng: np.random.Generator, spec: ShapesSpec) -> np.ndarray:
    """RGB uint8 (H, W, 3): a random colour, a linear gradient and pixel noise."""
    h, w = spec.height, spec.width
    base = rng.uniform(30, 225, size=3)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-6
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = ((xx / w - 0.5) * direction[0] + (yy / h - 0.5) * direction[1])[..., None]
    image = base + ramp * rng.uniform(-60, 60, size=3) + rng.normal(0, spec.background_noise, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A random RGB colour at least a little away from the background's mean colour."""
    for _ in range(50):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background_mean).sum() >= 90:
            return colour.astype(np.uint8)
    return (255 - background_mean).astype(np.uint8)


def draw_shapes_image(rng: np.random.Generator, spec: ShapesSpec):
    """Draw one image.

    Returns:
        image: RGB uint8 array, shape (H, W, 3).
        instances: list of dicts with ``category`` (index into ``spec.classes``), ``mask`` (bool
            (H, W), the visible pixels), ``colour`` (RGB) and ``visible_fraction``.
    """
    h, w = spec.height, spec.width
    image = _background(rng, spec)
    background_mean = image.reshape(-1, 3).mean(0)
    owner = np.full((h, w), -1, dtype=np.int32)  # index of the instance that owns each pixel
    full_areas: List[int] = []
    placed = []
    wanted = int(rng.integers(spec.min_shapes, spec.max_shapes + 1))
    for _ in range(wanted):
        for _attempt in range(20):
            kind_index = int(rng.integers(len(spec.classes)))
            radius = float(rng.uniform(spec.min_radius, spec.max_radius))
            center = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
            angle = float(rng.uniform(0, 2 * np.pi))
            stretch = float(np.exp(rng.uniform(-1, 1) * np.log(spec.max_stretch)))
            mask = _shape_mask(spec.classes[kind_index], center, radius, angle, stretch, h, w)
            if mask.sum() < spec.min_visible_pixels:
                continue
            trial = owner.copy()
            trial[mask] = len(placed)
            # Every earlier instance must stay visible enough after this one covers it.
            counts = np.bincount(trial[trial >= 0].ravel(), minlength=len(placed) + 1)
            if all(
                counts[i] >= spec.min_visible_pixels
                and counts[i] >= spec.min_visible_fraction * full_areas[i]
                for i in range(len(placed))
            ):
                owner = trial
                full_areas.append(int(mask.sum()))
                placed.append((kind_index, _shape_colour(rng, background_mean)))
                break
    instances = []
    for index, (kind_index, colour) in enumerate(placed):
        visible = owner == index
        image[visible] = colour
        instances.append(
            {
                "category": kind_index,
                "mask": visible,
                "colour": colour,
                "visible_fraction": float(visible.sum()) / full_areas[index],
            }
        )
    return image, instances


def split_dir(root: str, split_name: str, spec: ShapesSpec) -> str:
    """Where ``generate_shapes_split`` puts (or finds) a split: ``root/<name>_<fingerprint>``."""
    return os.path.join(root, f"{split_name}_{spec.fingerprint()}")


def _encode(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # json needs str, not bytes
    return rle


def _write_split(directory: str, split_name: str, spec: ShapesSpec) -> None:
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    os.makedirs(os.path.join(directory, "images"))
    images, annotations = [], []
    for image_id in range(1, spec.num_images + 1):
        image, instances = draw_shapes_image(rng, spec)
        file_name = f"{image_id:06d}.png"
        if not cv2.imwrite(os.path.join(directory, "images", file_name), image[:, :, ::-1]):
            raise OSError(f"could not write {os.path.join(directory, 'images', file_name)}")
        images.append({"id": image_id, "file_name": file_name, "height": spec.height, "width": spec.width})
        for inst in instances:
            rle = _encode(inst["mask"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": inst["category"] + 1,
                    "segmentation": rle,
                    "area": float(mask_util.area(rle)),
                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                    "iscrowd": 0,
                    "colour": [int(c) for c in inst["colour"]],
                    "visible_fraction": round(inst["visible_fraction"], 4),
                }
            )
    coco = {
        "info": {
            "description": f"gn_det synthetic shapes, split {split_name!r}",
            "generator_version": GENERATOR_VERSION,
            "spec": dataclasses.asdict(spec),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(spec.classes)],
    }
    with open(os.path.join(directory, "annotations.json"), "w") as f:
        json.dump(coco, f)


def generate_shapes_split(root: str, split_name: str, spec: ShapesSpec) -> str:
    """Generate a split under ``root`` unless it is already there; return its directory.

    The directory holds ``annotations.json`` and ``images/``. It is written under a temporary
    name and renamed when complete, so concurrent processes (one per GPU) and interrupted runs
    never see half a dataset.
    """
    final = split_dir(root, split_name, spec)
    if os.path.isfile(os.path.join(final, "annotations.json")):
        return final
    os.makedirs(root, exist_ok=True)
    logger.info(f"Generating synthetic shapes split {split_name!r} ({spec.num_images} images) in {final}")
    scratch = tempfile.mkdtemp(prefix=f".{split_name}-", dir=root)
    try:
        _write_split(os.path.join(scratch, "split"), split_name, spec)
        try:
            os.rename(os.path.join(scratch, "split"), final)
        except OSError:
            # Another process finished the same split first; its copy is identical.
            if not os.path.isfile(os.path.join(final, "annotations.json")):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
