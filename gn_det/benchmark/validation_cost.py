"""What reliability costs, measured side by side (``tools/benchmark.py validation``):

- COCO json validation throughput on a synthetic COCO-like dataset (640x480 JPEGs, polygons of
  8-60 vertices like COCO's), with and without the image header checks, and its peak memory
  (the benchmark's one meter, in a fresh process);
- a checkpoint save of a GN Mask R-CNN R50-FPN state_dict through Detectron2's
  DetectionCheckpointer vs gn_det's SafeDetectionCheckpointer (temp file, fsync, rename),
  interleaved by the one timing helper.

    python3 tools/benchmark.py validation [--images 2000] [--per-image 7] [--dir /tmp/x]
"""

import argparse
import json
import os
import statistics
import tempfile
from typing import Dict

import numpy as np
from PIL import Image

from .memory import PeakMemory, measure_in_fresh_process
from .report import write_json
from .timing import interleaved, timed_wall_and_cpu

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


def _check(json_file: str, image_root: str, check_images: bool):
    from ..validation.coco_checks import check_coco_json

    return check_coco_json(
        json_file, image_root, require_masks=True, for_evaluation=True, check_images=check_images
    )


def coco_validation_memory(meter: PeakMemory, json_file: str, image_root: str,
                           check_images: bool) -> Dict:
    """Fresh-process target: peak memory of checking one COCO json."""
    meter.start()
    result = _check(json_file, image_root, check_images)
    return {"ok": result.ok}


def bench_coco(root: str, n_images: int, per_image: int, memory: bool = True) -> Dict:
    json_file = make_dataset(root, n_images, per_image)
    image_root = os.path.join(root, "images")
    n_annotations = n_images * per_image
    print(f"COCO json validation, {n_images} images, {n_annotations} annotations:")
    out = {}
    for check_images in (False, True):
        results = []
        wall, cpu = timed_wall_and_cpu(lambda: results.append(_check(json_file, image_root, check_images)))
        assert results[0].ok, results[0].report.format(5)
        line = (
            f"  image headers {'checked' if check_images else 'skipped'}: {wall:.2f} s wall, "
            f"{cpu:.2f} s CPU ({1e6 * cpu / n_annotations:.0f} us CPU per annotation, "
            f"{n_annotations / wall:.0f} annotations/s)"
        )
        row = {"wall_s": wall, "cpu_s": cpu, "annotations": n_annotations}
        if memory:
            mem = measure_in_fresh_process(
                "gn_det.benchmark.validation_cost:coco_validation_memory",
                dict(json_file=json_file, image_root=image_root, check_images=check_images),
                what="COCO json validation",
            )
            row["peak_memory_mib"] = mem["peak_growth_bytes"] / 2**20
            line += f", peak memory +{row['peak_memory_mib']:.0f} MiB"
        print(line)
        out["headers_checked" if check_images else "headers_skipped"] = row
    return out


def bench_save(root: str, repeats: int = 4) -> Dict:
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    import gn_det  # noqa: F401  registers the modules the config names
    from gn_det import add_gn_config, model_zoo
    from gn_det.checkpoint import SafeDetectionCheckpointer

    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file("Base-GN-RCNN-FPN.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.MASK_ON", "True"])
    model = build_model(cfg)
    size = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 2**20
    classes = {"DetectionCheckpointer": DetectionCheckpointer,
               "SafeDetectionCheckpointer": SafeDetectionCheckpointer}
    saves = {name: (lambda c=cls: c(model, root).save("model")) for name, cls in classes.items()}
    # Interleaved, so both see the same disk state; the file is removed outside the timed span.
    times = interleaved(saves, repeats, warmup=0, timer="wall",
                        after=lambda *_: os.remove(os.path.join(root, "model.pth")))
    plain = statistics.median(times["DetectionCheckpointer"])
    safe = statistics.median(times["SafeDetectionCheckpointer"])
    print(
        f"Checkpoint save, GN Mask R-CNN R50-FPN state_dict ({size:.0f} MiB), median of {repeats}:"
    )
    print(f"  DetectionCheckpointer (plain write)           : {plain:.2f} s")
    print(f"  SafeDetectionCheckpointer (temp, fsync, rename): {safe:.2f} s  ({safe / plain:.2f}x)")
    return {"state_dict_mib": size, "plain_s": plain, "safe_s": safe, "repeats": repeats}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tools/benchmark.py validation``."""
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--per-image", type=int, default=7)
    parser.add_argument("--dir", default="", help="work directory (default: a new temp dir)")
    parser.add_argument("--save-repeats", type=int, default=4, help="checkpoint saves per class")
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak memory")
    parser.add_argument("--no-save", action="store_true", help="skip the checkpoint-save timing")
    parser.add_argument("--output", help="also write the numbers as JSON to this path")


def run(args: argparse.Namespace) -> Dict:
    if args.images < 1 or args.per_image < 1 or args.save_repeats < 1:
        raise ValueError(
            f"--images, --per-image and --save-repeats must be >= 1, got {args.images}, "
            f"{args.per_image}, {args.save_repeats}."
        )
    root = args.dir or tempfile.mkdtemp(prefix="gn_det_bench_")
    result = {"coco": bench_coco(os.path.join(root, "coco"), args.images, args.per_image,
                                 memory=not args.no_memory)}
    if not args.no_save:
        result["checkpoint_save"] = bench_save(root, args.save_repeats)
    if args.output:
        write_json(result, args.output)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
