"""The bulk check (gn_det/validation/fast_path.py) passes an annotation only when the exact
per-annotation rules (coco_annotations.AnnotationCheck) find nothing in it, and passes every
annotation of a valid COCO-like set (else a COCO-sized json would take the slow path)."""

import json

import numpy as np
import pytest

import corpus
from gn_det.validation.coco_annotations import AnnotationCheck
from gn_det.validation.fast_path import clean_annotations

COCO_KINDS = sorted(name for fmt, name in corpus.KINDS if fmt == "coco")


def _findings(ann, size, require_masks, for_evaluation):
    found = []
    check = AnnotationCheck(dict(ann), *size, lambda kind, message, repair="": found.append(kind) or "warning",
                            require_masks=require_masks, for_evaluation=for_evaluation)
    check.run()
    return found


@pytest.mark.parametrize("require_masks,for_evaluation", [(True, False), (False, True)])
@pytest.mark.parametrize("name", COCO_KINDS)
def test_what_the_bulk_check_passes_the_exact_rules_pass(tmp_path, name, require_masks, for_evaluation):
    path, _, _ = corpus.write("coco", name, str(tmp_path))
    data = json.loads(open(path).read())
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]
             if isinstance(img, dict) and type(img.get("width")) is int and type(img.get("height")) is int}
    category_ids = {c["id"] for c in data["categories"]}
    clean, duplicates, _ = clean_annotations(data["annotations"], sizes, category_ids,
                                             require_masks=require_masks, for_evaluation=for_evaluation)
    assert not set(duplicates) & set(np.flatnonzero(clean).tolist())
    for position in np.flatnonzero(clean).tolist():
        ann = data["annotations"][position]
        size = sizes[ann["image_id"]]
        assert _findings(ann, size, require_masks, for_evaluation) == [], (name, ann)
    if name == "clean":
        assert clean.all()


def test_a_valid_coco_like_set_is_passed_in_bulk():
    rng = np.random.default_rng(0)
    annotations = []
    for k in range(3000):
        n = int(rng.integers(3, 60))
        angles = np.sort(rng.random(n)) * 2 * np.pi  # star-shaped, some concave, some nearly flat
        radius = rng.random(n) * 40 + 0.5
        cx, cy = rng.uniform(0, 640), rng.uniform(0, 480)
        poly = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1).clip([0, 0], [640, 480])
        (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
        annotations.append({"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": int(k % 50 == 0), "area": 1.0,
                            "bbox": [float(x0), float(y0), float(x1 - x0) + 0.1, float(y1 - y0) + 0.1],
                            "segmentation": [poly.round(2).ravel().tolist()]})
    clean, _, largest = clean_annotations(annotations, {1: (640, 480)}, {1}, require_masks=True, for_evaluation=True)
    exact = [not _findings(a, (640, 480), True, True) for a in annotations]
    assert largest == 3000 and clean.tolist() == exact and clean.mean() > 0.99
