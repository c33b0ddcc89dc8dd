"""Real public datasets through Detectron2 alone and through gn_det, side by side (issue 28).

    PYTHONPATH=. nice python3 docs/results/2026-12-06_real_datasets.py \
        [--list docs/results/2026-12-06_real_datasets_list.json] [--data-root /work/data] \
        [--only NAME ...] [--no-gn-det-train] [--output FILE.json]

For each dataset of the list (name, format, file, image_dir relative to --data-root; optional
"opts", config overrides given to both sides, e.g. MODEL.MASK_ON False for a box-only set):

(a) Detectron2 alone, on the same files:
  - COCO: ``register_coco_instances`` and ``DatasetCatalog.get`` (``load_coco_json``).
  - VIA / labelme (Detectron2 has no loader): gn_det's converter (gn_det.data.formats.convert,
    every record it can convert, nothing dropped) written to a COCO json and read by
    ``load_coco_json``, so that what Detectron2 then does is Detectron2's; and, separately, the
    loader a user writes after Detectron2's balloon tutorial (``user_loader``): does it load?
  - ``get_detection_dataset_dicts``' filter (images with no non-crowd annotation are left out:
    DATALOADER.FILTER_EMPTY_ANNOTATIONS), then ``DatasetMapper(cfg, is_train=True)`` over every
    record with the Synthetic config's augmentations (resize to 160 px, flip; masks as bitmasks),
    counting records that raise (by exception) and instances it drops (crowd; empty box; empty
    mask, which at 160 px includes polygons of a few pixels that rasterize to nothing).
  - One training step (forward, backward, SGD step) of the Synthetic GN R18-FPN Mask R-CNN with
    NUM_CLASSES from the dataset, on the first two mapped records, and on two records whose
    instances the mapper dropped (if any).
(b) gn_det today: ``tools/validate.py`` with ``--dataset NAME FILE IMAGE_DIR`` (the README's
    fine-tune command line, DATASETS.TRAIN the dataset, no test set), then with --skip-invalid;
    counts by level and kind from validation_report.json; then ``tools/train_net.py`` with the
    same arguments, SOLVER.MAX_ITER 2 (and with --skip-invalid when the plain run stops).

Prints one line per dataset and writes every count to the JSON (default: next to this script,
``2026-12-06_real_datasets_<label>.json`` with --label, "before" by default); ``--table JSON``
prints the side-by-side markdown table of such a file (docs/datasets.md's).
"""

import argparse
import collections
import contextlib
import copy
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback

import cv2
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "Synthetic", "mask_rcnn_R_18_FPN_gn_scratch.yaml")
HERE = os.path.dirname(os.path.abspath(__file__))
# Small inputs and two images per step: the question is whether a step runs, not how fast.
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(160,)", "INPUT.MAX_SIZE_TRAIN", "160", "SOLVER.IMS_PER_BATCH", "2"]


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


# ---------------------------------------------------------------- Detectron2 alone: loading


def user_loader(fmt: str, path: str, image_dir: str, label_key=None):
    """The loader a Detectron2 user writes after the balloon tutorial: VIA polygons (and labelme
    shapes) as polygons, the box from the points' min/max, height/width from cv2.imread, one
    class per distinct label (``label_key`` of region_attributes for VIA; labelme's ``label``).
    It is deliberately plain: what it cannot read raises, as the tutorial's code would."""
    from detectron2.structures import BoxMode

    records, labels = [], []
    if fmt == "via":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        data = data.get("_via_img_metadata", data)  # a VIA 2 project file holds the export here
        items = []
        for v in data.values():
            regions = v["regions"].values() if isinstance(v["regions"], dict) else v["regions"]
            shapes = []
            for r in regions:
                a = r["shape_attributes"]
                label = r["region_attributes"][label_key] if label_key else "object"
                shapes.append((label, list(zip(a["all_points_x"], a["all_points_y"]))))
            items.append((os.path.join(image_dir, v["filename"]), shapes))
    else:
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(path) else [os.path.basename(path)]
        items = []
        for name in files:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                j = json.load(f)
            shapes = []
            for s in j["shapes"]:
                pts = [tuple(p) for p in s["points"]]
                if s.get("shape_type") == "rectangle":
                    (x0, y0), (x1, y1) = pts
                    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
                shapes.append((s["label"], pts))
            items.append((os.path.join(image_dir, j["imagePath"]), shapes))
    labels = sorted({label for _, shapes in items for label, _ in shapes})
    for idx, (file_name, shapes) in enumerate(items):
        height, width = cv2.imread(file_name).shape[:2]
        objs = []
        for label, pts in shapes:
            px, py = [p[0] for p in pts], [p[1] for p in pts]
            poly = [c for x, y in pts for c in (x + 0.5, y + 0.5)]
            objs.append({
                "bbox": [np.min(px), np.min(py), np.max(px), np.max(py)],
                "bbox_mode": BoxMode.XYXY_ABS,
                "segmentation": [poly],
                "category_id": labels.index(label),
            })
        records.append({"file_name": file_name, "image_id": idx, "height": height, "width": width, "annotations": objs})
    return records, labels


def d2_load(entry: dict, root: str, work: str):
    """Detectron2's dataset dicts for ``entry`` and its class names (see the module docstring)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    path, image_dir = os.path.join(root, entry["file"]), os.path.join(root, entry["image_dir"])
    out = {}
    coco_json = path
    if entry["format"] != "coco":
        from gn_det.data.formats import convert

        _, builder = convert(path, image_dir)
        out["converter_errors"] = len(builder.errors)
        out["converter_error_examples"] = [f"{p.where}: {p.message}"[:300] for p in builder.errors[:3]]
        coco_json = os.path.join(work, f"{entry['name']}_converted.json")
        with open(coco_json, "w", encoding="utf-8") as f:
            json.dump(builder.coco(), f)
        try:
            records, labels = user_loader(entry["format"], path, image_dir, entry.get("label_key"))
            out["user_loader"] = {"loads": True, "records": len(records), "annotations": sum(len(r["annotations"]) for r in records), "classes": labels}
        except Exception as e:  # what the tutorial-style loader does on this data
            out["user_loader"] = {"loads": False, "error": _error(e)}
    name = "d2only_" + entry["name"]
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, coco_json, image_dir)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dicts = DatasetCatalog.get(name)
    except Exception as e:
        out["loads"] = False
        out["load_error"] = _error(e)
        return out, None, None
    out["loads"] = True
    out["records"] = len(dicts)
    out["annotations"] = sum(len(d.get("annotations", [])) for d in dicts)
    classes = MetadataCatalog.get(name).thing_classes
    out["classes"] = len(classes)
    return out, dicts, classes


# ------------------------------------------------------- Detectron2 alone: mapper, one step


def d2_cfg(num_classes: int, opts=()):
    from detectron2.config import get_cfg
    from gn_det import add_gn_config

    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(SMALL + ["MODEL.ROI_HEADS.NUM_CLASSES", str(max(1, num_classes))] + list(opts))
    return cfg


def d2_map(cfg, dicts):
    """DatasetMapper(is_train=True) over every record kept by Detectron2's empty filter."""
    from detectron2.data import DatasetMapper
    from detectron2.data.build import filter_images_with_only_crowd_annotations

    logging.getLogger("detectron2").setLevel(logging.WARNING)
    from detectron2.data import detection_utils

    kept = filter_images_with_only_crowd_annotations(dicts) if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS else dicts
    mapper = DatasetMapper(cfg, is_train=True)
    errors = collections.OrderedDict()
    counts = collections.Counter()
    original = detection_utils.filter_empty_instances

    def counting_filter(instances, *args, **kwargs):
        # Why the mapper drops an instance: an empty box, or (box not empty) an empty mask, e.g.
        # a polygon of a few pixels that rasterizes to nothing at the training size.
        box_empty = ~instances.gt_boxes.nonempty()
        counts["dropped_empty_box"] += int(box_empty.sum())
        if instances.has("gt_masks"):
            counts["dropped_empty_mask"] += int((~instances.gt_masks.nonempty() & ~box_empty).sum())
        return original(instances, *args, **kwargs)

    detection_utils.filter_empty_instances = counting_filter
    mapped, with_drops = [], []
    for d in kept:
        anns = d.get("annotations", [])
        crowd = sum(1 for a in anns if a.get("iscrowd", 0))
        try:
            out = mapper(copy.deepcopy(d))
        except Exception as e:
            # One entry per kind of failure: the record's own path is not part of the kind.
            key = _error(e).replace(d["file_name"], "<file_name>").replace(repr(d["file_name"])[1:-1], "<file_name>")
            errors.setdefault(key, {"records": 0, "first": os.path.basename(d["file_name"])})
            errors[key]["records"] += 1
            counts["records_raised"] += 1
            counts["annotations_of_raising_records"] += len(anns)
            continue
        n_out = len(out["instances"]) if "instances" in out else 0
        counts["records_mapped"] += 1
        counts["instances_in"] += len(anns) - crowd
        counts["instances_out"] += n_out
        counts["crowd_dropped"] += crowd
        dropped = len(anns) - crowd - n_out
        counts["empty_dropped"] += dropped
        counts["records_with_empty_dropped"] += dropped > 0
        counts["records_without_masks"] += n_out > 0 and not out["instances"].has("gt_masks")
        mapped.append(out)
        if dropped:
            with_drops.append(out)
    detection_utils.filter_empty_instances = original
    return {
        "records_in": len(dicts),
        "records_filtered_empty": len(dicts) - len(kept),
        **counts,
        "exceptions": [{"error": k, **v} for k, v in errors.items()],
    }, mapped, with_drops


def d2_step(cfg, batch) -> dict:
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    try:
        with EventStorage(0):
            losses = model(batch)
            total = sum(losses.values())
            total.backward()
            optimizer.step()
    except Exception as e:
        return {"ok": False, "error": _error(e), "images": [os.path.basename(b["file_name"]) for b in batch]}
    return {
        "ok": bool(torch.isfinite(total.detach())),
        "loss": round(float(total.detach()), 4),
        "terms": sorted(losses),
        "images": [os.path.basename(b["file_name"]) for b in batch],
    }


def detectron2_alone(entry, root, work) -> dict:
    out, dicts, classes = d2_load(entry, root, work)
    if dicts is None:
        return out
    cfg = d2_cfg(len(classes), entry.get("opts", []))
    out["mapper"], mapped, with_drops = d2_map(cfg, dicts)
    batches = {"first_two": mapped[:2]}
    if len(with_drops) >= 1:
        batches["with_dropped_instances"] = with_drops[:2]
    out["train_step"] = {k: d2_step(cfg, b) for k, b in batches.items() if b}
    return out


# --------------------------------------------------------------------------- gn_det today


def _run(cmd, env, timeout=1200):
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr, round(time.perf_counter() - start, 1)


def _report_counts(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    problems = report.get("problems", [])
    by = collections.Counter()
    for p in problems:
        level = "dropped" if p.get("dropped") else ("repaired" if p.get("repair") else p.get("level"))
        by[f"{level}:{p.get('kind')}"] += 1
    return {
        "errors": sum(1 for p in problems if p.get("level") == "error" and not p.get("dropped")),
        "warnings": sum(1 for p in problems if p.get("level") == "warning"),
        "repairs": sum(1 for p in problems if p.get("repair")),
        "dropped_problems": sum(1 for p in problems if p.get("dropped")),
        "by_kind": dict(sorted(by.items())),
        "dropped_counts": report.get("dropped", {}),
    }


def _tail(text: str, needles=("Validation", "Error", "error", "Traceback", "FAILED", "passed")) -> list:
    lines = [line for line in text.splitlines() if any(n in line for n in needles) and "Build settings" not in line]
    return [line[:300] for line in lines[-4:]]


def gn_det_today(entry, root, work, train: bool) -> dict:
    name = entry["name"]
    path, image_dir = os.path.join(root, entry["file"]), os.path.join(root, entry["image_dir"])
    env = dict(os.environ, PYTHONPATH=REPO, GN_DET_CACHE_DIR=os.path.join(work, "cache"), OMP_NUM_THREADS="1")
    common = ["--config-file", CONFIG, "--dataset", name, path, image_dir]
    opts = ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()"] + SMALL + entry.get("opts", [])
    out = {}
    for label, flags in (("validate", []), ("validate_skip_invalid", ["--skip-invalid"])):
        outdir = os.path.join(work, f"{name}_{label}")
        rc, text, secs = _run([sys.executable, "tools/validate.py", *common, *flags, *opts, "OUTPUT_DIR", outdir], env)
        registered = [line.split("Registered dataset ", 1)[1][:300] for line in text.splitlines() if "Registered dataset " in line]
        out[label] = {"exit": rc, "seconds": secs, **_report_counts(os.path.join(outdir, "validation_report.json")),
                      "registered": registered[-1:], "tail": _tail(text)}
    if train:
        runs = [("train", [])]
        if out["validate"]["exit"] != 0:
            runs.append(("train_skip_invalid", ["--skip-invalid"]))
        for label, flags in runs:
            outdir = os.path.join(work, f"{name}_{label}")
            rc, text, secs = _run([sys.executable, "tools/train_net.py", *common, *flags, *opts,
                                   "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", outdir], env)
            iters = [line for line in text.splitlines() if "iter: " in line]
            out[label] = {"exit": rc, "seconds": secs, "iterations_logged": len(iters),
                          "last_iter": iters[-1][-200:] if iters else "", "tail": _tail(text)}
    return out


# ------------------------------------------------------------------------------ the table


def _d2_verdict(d2: dict) -> str:
    if not d2.get("loads", False):
        return f"load fails: {d2.get('load_error', '?')}"
    m = d2.get("mapper", {})
    parts = [f"{d2['records']} records / {d2['annotations']} ann."]
    if m.get("records_filtered_empty"):
        parts.append(f"{m['records_filtered_empty']} images without annotations left out")
    if m.get("records_raised"):
        kinds = sorted({e["error"].split(":")[0] for e in m.get("exceptions", [])})
        parts.append(f"mapper raises on {m['records_raised']} records ({', '.join(kinds)})")
    for key, what in (("dropped_empty_box", "empty box"), ("dropped_empty_mask", "empty mask at 160 px"), ("crowd_dropped", "crowd")):
        if m.get(key):
            parts.append(f"{m[key]} dropped ({what})")
    steps = d2.get("train_step", {})
    failed = [v["error"] for v in steps.values() if not v.get("ok")]
    parts.append("step: " + (f"crashes ({failed[0][:80]})" if failed else ("trains" if steps else "no batch")))
    return "; ".join(parts)


def _gn_verdict(gd: dict) -> str:
    v = gd.get("validate", {})
    levels = collections.defaultdict(list)
    for key, n in sorted(v.get("by_kind", {}).items()):
        level, kind = key.split(":", 1)
        levels[level].append(f"{n} {kind}")
    kinds = "; ".join(f"{level}s {', '.join(k)}" for level, k in levels.items()) or "nothing"
    parts = [f"validate exit {v.get('exit')} ({kinds})"]
    s = gd.get("validate_skip_invalid", {})
    for counts in s.get("dropped_counts", {}).values():
        if counts.get("images") or counts.get("annotations (invalid)") or counts.get("annotations (of dropped images)"):
            parts.append(f"--skip-invalid exit {s.get('exit')}: kept {counts.get('images kept')} images / {counts.get('annotations kept')} ann.")
    for label, flag in (("train", ""), ("train_skip_invalid", " --skip-invalid")):
        if label in gd:
            t = gd[label]
            how = "trains" if t["exit"] == 0 else ("stops: " + (t["tail"][-1][:80] if t["tail"] else "?"))
            parts.append(f"train_net{flag} exit {t['exit']} ({how})")
    return "; ".join(parts)


def print_table(path: str) -> None:
    """A markdown table of a results JSON: one row per dataset, Detectron2 alone vs gn_det."""
    with open(path, encoding="utf-8") as f:
        results = json.load(f)["datasets"]
    print("| dataset | Detectron2 alone | gn_det |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {_d2_verdict(r.get('detectron2', {}))} | {_gn_verdict(r.get('gn_det', {}))} |")


# ---------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", default=os.path.join(HERE, "2026-12-06_real_datasets_list.json"))
    parser.add_argument("--data-root", default=os.environ.get("GN_DET_REAL_DATA", "/work/data"))
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--label", default="before", help="'before' or 'after' the new policy")
    parser.add_argument("--no-gn-det-train", action="store_true")
    parser.add_argument("--no-detectron2", action="store_true")
    parser.add_argument("--output", default=None)
    parser.add_argument("--table", metavar="JSON", help="print the markdown table of a results JSON and exit")
    args = parser.parse_args(argv)
    if args.table:
        print_table(args.table)
        return 0
    torch.set_num_threads(1)
    import gn_det  # noqa: F401  registers gn_det's backbone and heads (the Synthetic config's)

    with open(args.list, encoding="utf-8") as f:
        entries = [e for e in json.load(f)["datasets"] if not args.only or e["name"] in args.only]
    output = args.output or os.path.join(HERE, f"2026-12-06_real_datasets_{args.label}.json")
    results = {}
    if os.path.exists(output) and args.only:
        with open(output, encoding="utf-8") as f:
            results = json.load(f).get("datasets", {})
    for entry in entries:
        missing = [k for k in ("file", "image_dir") if not os.path.exists(os.path.join(args.data_root, entry[k]))]
        if missing:
            print(f"{entry['name']}: not under {args.data_root} ({', '.join(missing)}); skipped")
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"real_{entry['name']}_") as work:
            result = {"source": {k: entry.get(k) for k in ("repository", "commit", "path", "license", "format", "tool", "opts")}}
            try:
                if not args.no_detectron2:
                    result["detectron2"] = detectron2_alone(entry, args.data_root, work)
                result["gn_det"] = gn_det_today(entry, args.data_root, work, train=not args.no_gn_det_train)
            except Exception:
                result["harness_error"] = traceback.format_exc()[-2000:]
        result["seconds"] = round(time.perf_counter() - start, 1)
        results[entry["name"]] = result
        d2, gd = result.get("detectron2", {}), result.get("gn_det", {})
        m = d2.get("mapper", {})
        print(f"{entry['name']}: d2 loads={d2.get('loads')} records={d2.get('records')} anns={d2.get('annotations')} "
              f"mapper raised={m.get('records_raised', 0)} dropped={m.get('empty_dropped', 0)} "
              f"step={[v.get('ok') for v in d2.get('train_step', {}).values()]} | gn_det validate exit="
              f"{gd.get('validate', {}).get('exit')} errors={gd.get('validate', {}).get('errors')} "
              f"warnings={gd.get('validate', {}).get('warnings')} train exit={gd.get('train', {}).get('exit')} "
              f"({result['seconds']} s)", flush=True)
        with open(output, "w", encoding="utf-8") as f:
            json.dump({"label": args.label, "load": os.getloadavg(), "datasets": results}, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
