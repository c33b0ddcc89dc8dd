"""Validation + registration of a COCO-like json against Detectron2's own load_coco_json, side by
side, each in a fresh process (wall time and peak RSS), repeated and interleaved; before (the
main checkout) and after (this checkout).

    python3 docs/results/2026-12-06_validation_coco_scale.py --images 15000 --per-image 7 \
        --before /work/main --out docs/results/2026-12-06_validation_coco_scale.json

The json: 640 x 480 images (hard links to one JPEG), polygons of 8-60 vertices as COCO's, one
crowd RLE per 20 images, 80 categories.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AFTER = os.path.dirname(os.path.dirname(HERE))

# What each measured process does after its imports (timed from there; peak RSS of the process).
TARGETS = {
    "detectron2_load": """
from detectron2.data.datasets import load_coco_json
t = time.perf_counter(); dicts = load_coco_json(JSON, ROOT, "bench")
""",
    # What `--dataset NAME JSON DIR` does before launch: validate (one read) and register.
    "gn_det_validate_register": """
from gn_det.validation import check_dataset
from gn_det.data.coco_register import register_coco_dataset
t = time.perf_counter()
result = check_dataset(JSON, ROOT, dataset_name="bench", require_masks=True, for_training=True,
                       check_images=HEADERS, mask_format="bitmask")
assert result.ok, result.report.format(5)
register_coco_dataset("bench", result.json_file, ROOT, metadata=result.metadata, parsed=result.data)
""",
    # The same, then the single training process's first load of the dataset (Detectron2's loader).
    "gn_det_validate_register_load": """
from gn_det.validation import check_dataset
from gn_det.data.coco_register import register_coco_dataset
from detectron2.data import DatasetCatalog
t = time.perf_counter()
result = check_dataset(JSON, ROOT, dataset_name="bench", require_masks=True, for_training=True,
                       check_images=HEADERS, mask_format="bitmask")
assert result.ok, result.report.format(5)
register_coco_dataset("bench", result.json_file, ROOT, metadata=result.metadata, parsed=result.data)
del result
dicts = DatasetCatalog.get("bench")
""",
    # The main checkout: check, then register (which read the json again), then the load.
    "before_validate_register": """
from gn_det.validation import check_coco_json
from gn_det.data import register_dataset
t = time.perf_counter()
result = check_coco_json(JSON, ROOT, dataset_name="bench", require_masks=True, check_images=HEADERS)
assert result.ok
register_dataset("bench", JSON, ROOT)
""",
    "before_validate_register_load": """
from gn_det.validation import check_coco_json
from gn_det.data import register_dataset
from detectron2.data import DatasetCatalog
t = time.perf_counter()
result = check_coco_json(JSON, ROOT, dataset_name="bench", require_masks=True, check_images=HEADERS)
assert result.ok
register_dataset("bench", JSON, ROOT)
del result
dicts = DatasetCatalog.get("bench")
""",
}

_PRELUDE = """
import json, os, resource, sys, time
import gn_det  # every process pays the same imports before the clock starts
JSON, ROOT, HEADERS = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
with open("/proc/self/statm") as f:  # resident memory after the imports: what the run adds is above it
    BASE_MIB = int(f.read().split()[1]) * resource.getpagesize() / 2**20
"""
_EPILOGUE = """
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_rss_mib": peak, "peak_growth_mib": peak - BASE_MIB}))
"""


def make_json(root: str, n_images: int, per_image: int, seed: int = 0) -> str:
    import numpy as np
    import pycocotools.mask as mask_util
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    source = os.path.join(root, "source.jpg")
    Image.new("RGB", (640, 480), (90, 120, 60)).save(source, quality=50)
    images, annotations = [], []
    crowd = np.zeros((480, 640), np.uint8, order="F")
    crowd[100:300, 200:500] = 1
    crowd_rle = mask_util.encode(crowd)
    crowd_rle = {"size": list(crowd_rle["size"]), "counts": crowd_rle["counts"].decode()}
    for i in range(n_images):
        name = f"{i:06d}.jpg"
        if not os.path.exists(os.path.join(root, "images", name)):
            os.link(source, os.path.join(root, "images", name))
        images.append({"id": i + 1, "file_name": name, "width": 640, "height": 480})
        for _ in range(per_image):
            n = int(rng.integers(8, 60))
            angles = (np.arange(n) + rng.random(n) * 0.9) * 2 * np.pi / n
            radius = rng.random(n) * 40 + 10
            cx, cy = rng.uniform(60, 580), rng.uniform(60, 420)
            poly = np.round(np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1), 2)
            (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 81)),
                                "iscrowd": 0, "area": float((x1 - x0) * (y1 - y0)),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "segmentation": [poly.ravel().tolist()]})
        if i % 20 == 0:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 1,
                                "area": 60000.0, "bbox": [200.0, 100.0, 300.0, 200.0], "segmentation": crowd_rle})
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": c, "name": f"class{c}"} for c in range(1, 81)]}, f)
    return path


def run(target: str, json_file: str, root: str, headers: bool, checkout: str) -> dict:
    env = dict(os.environ, PYTHONPATH=checkout, GN_DET_CACHE_DIR=tempfile.mkdtemp(prefix="bench_cache_"),
               OMP_NUM_THREADS="1")
    code = _PRELUDE + TARGETS[target] + _EPILOGUE
    done = subprocess.run([sys.executable, "-c", code, json_file, root, "1" if headers else "0"],
                          capture_output=True, text=True, env=env, cwd=checkout)
    if done.returncode:
        raise RuntimeError(f"{target}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=15000)
    parser.add_argument("--per-image", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="", help="a checkout of the code before (its gn_det is imported)")
    parser.add_argument("--dir", default="")
    parser.add_argument("--out", default="")
    parser.add_argument("--targets", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    args = parser.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="coco_scale_")
    json_file = os.path.join(root, "annotations.json")
    if not os.path.isfile(json_file):
        make_json(root, args.images, args.per_image)
    with open(json_file) as f:
        data = json.load(f)
    size = {"images": len(data["images"]), "annotations": len(data["annotations"]),
            "json_mib": os.path.getsize(json_file) / 2**20}
    del data
    plan = [(t, h) for h in (False, True) for t in args.targets if not t.startswith("before") or args.before]
    samples = {f"{t} headers={h}": [] for t, h in plan}
    for _ in range(args.repeats):  # interleaved: every target sees the same machine state
        for target, headers in plan:
            checkout = args.before if target.startswith("before") else AFTER
            if target == "detectron2_load" and headers:
                continue  # Detectron2 reads no image header
            samples[f"{target} headers={headers}"].append(
                run(target, json_file, os.path.join(root, "images"), headers, checkout))
    load = os.getloadavg()
    results = {}
    for key, runs in samples.items():
        if runs:
            results[key] = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "peak_rss_mib", "peak_growth_mib")}
            results[key]["runs"] = runs
    base = results["detectron2_load headers=False"]
    print(f"{size['images']} images, {size['annotations']} annotations, {size['json_mib']:.0f} MiB json; "
          f"load average {load[0]:.1f}; median of {args.repeats}")
    for key, r in results.items():
        print(f"  {key:45s} {r['wall_s']:6.2f} s ({r['wall_s'] / base['wall_s']:.2f} x)  "
              f"peak RSS {r['peak_rss_mib']:6.0f} MiB ({r['peak_rss_mib'] / base['peak_rss_mib']:.2f} x), "
              f"above the imports {r['peak_growth_mib']:6.0f} MiB ({r['peak_growth_mib'] / base['peak_growth_mib']:.2f} x)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"dataset": size, "load_average": load, "repeats": args.repeats, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
