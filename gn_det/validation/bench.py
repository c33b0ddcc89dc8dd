"""What reliability costs, measured side by side:

- COCO json validation throughput on a synthetic COCO-like dataset (640x480 JPEGs, polygons of
  8-60 vertices like COCO's), with and without the image header checks;
- a checkpoint save of a GN Mask R-CNN R50-FPN state_dict through Detectron2's
  DetectionCheckpointer vs gn_det's SafeDetectionCheckpointer (temp file, fsync, rename).

    python3 -m gn_det.validation.bench [--images 2000] [--per-image 7] [--dir /tmp/x]
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

W, H = 640, 480


def make_dataset(root: str, n_images: int, per_image: int, seed: int = 0) -> str:
    """A valid COCO json + images under ``root``; returns the json path."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    images, annotations = [], []
    for i in range(n_images):
        name = f"{i:06d}.jpg"
        path = os.path.join(root, "images", name)
        if not os.path.exists(path):
            Image.new("RGB", (W, H), (i % 255, 0, 0)).save(path, quality=50)
        images.append({"id": i, "file_name": name, "width": W, "height": H})
        for _ in range(per_image):
            n = int(rng.integers(8, 60))
            # Angular gaps below pi around the centre: star-shaped, hence simple polygons.
            angles = (np.arange(n) + rng.random(n) * 0.9) * 2 * np.pi / n
            radius = rng.random(n) * 40 + 10
            cx, cy = rng.uniform(60, W - 60), rng.uniform(60, H - 60)
            poly = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
            (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "iscrowd": 0,
                    "area": 1.0,
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "segmentation": [poly.ravel().tolist()],
                }
            )
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "thing"}],
            },
            f,
        )
    return path


def bench_coco(root: str, n_images: int, per_image: int) -> None:
    from .coco_checks import check_coco_json

    json_file = make_dataset(root, n_images, per_image)
    n_annotations = n_images * per_image
    print(f"COCO json validation, {n_images} images, {n_annotations} annotations:")
    for check_images in (False, True):
        wall, cpu = time.perf_counter(), time.process_time()
        result = check_coco_json(
            json_file,
            os.path.join(root, "images"),
            require_masks=True,
            for_evaluation=True,
            check_images=check_images,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert result.ok, result.report.format(5)
        print(
            f"  image headers {'checked' if check_images else 'skipped'}: {wall:.2f} s wall, "
            f"{cpu:.2f} s CPU ({1e6 * cpu / n_annotations:.0f} us CPU per annotation, "
            f"{n_annotations / wall:.0f} annotations/s)"
        )


def bench_save(root: str, repeats: int = 4) -> None:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    import gn_det  # noqa: F401  registers the modules the config names
    from gn_det import add_gn_config
    from gn_det.checkpoint import SafeDetectionCheckpointer

    cfg = get_cfg()
    add_gn_config(cfg)
    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "Base-GN-RCNN-FPN.yaml")
    cfg.merge_from_file(config)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.MASK_ON", "True"])
    model = build_model(cfg)
    size = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 2**20
    times = {"DetectionCheckpointer": [], "SafeDetectionCheckpointer": []}
    classes = (
        ("DetectionCheckpointer", DetectionCheckpointer),
        ("SafeDetectionCheckpointer", SafeDetectionCheckpointer),
    )
    for rep in range(repeats):
        for name, cls in classes:  # interleaved, so both see the same disk state
            checkpointer = cls(model, root)
            start = time.perf_counter()
            checkpointer.save(f"model_{rep}")
            times[name].append(time.perf_counter() - start)
            os.remove(os.path.join(root, f"model_{rep}.pth"))
    plain = statistics.median(times["DetectionCheckpointer"])
    safe = statistics.median(times["SafeDetectionCheckpointer"])
    print(
        f"Checkpoint save, GN Mask R-CNN R50-FPN state_dict ({size:.0f} MiB), median of {repeats}:"
    )
    print(f"  DetectionCheckpointer (plain write)           : {plain:.2f} s")
    print(f"  SafeDetectionCheckpointer (temp, fsync, rename): {safe:.2f} s  ({safe / plain:.2f}x)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--per-image", type=int, default=7)
    parser.add_argument("--dir", default="", help="work directory (default: a new temp dir)")
    args = parser.parse_args(argv)
    root = args.dir or tempfile.mkdtemp(prefix="gn_det_bench_")
    bench_coco(os.path.join(root, "coco"), args.images, args.per_image)
    bench_save(root)


if __name__ == "__main__":
    main()
