"""The differential harness: Detectron2 alone and gn_det on the same dataset, side by side.

Detectron2 alone: its loader (``load_coco_json``; VIA and labelme data first go through a plain
converter, below, that hands every region to Detectron2 as it is, as VIA's COCO export or
labelme's ``labelme2coco`` example would), Detectron2's training-set filter
(``filter_images_with_only_crowd_annotations``), ``DatasetMapper(cfg, is_train=True)`` with the
config's augmentations over every record, and one training step (forward, backward, finite
losses) of a tiny GN Mask R-CNN on everything the mapper yields.

gn_det: ``check_dataset`` (default and ``--strict``); where it accepts, the json it hands
training goes through the same Detectron2 path and must train.

``compare(fmt, path, image_root, mask_format)`` returns a ``Comparison``; the rule it checks is
``Comparison.violations()``. As a tool, on any dataset (a real one, say):

    python3 tests/validation/differential.py FILE IMAGE_DIR [--mask-format bitmask]
    python3 tests/validation/differential.py --corpus     # docs/validation.md's corpus table
"""

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ["Run", "Verdict", "Comparison", "detectron2_alone", "gn_det_verdict", "compare", "plain_coco"]

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- a plain converter: VIA / labelme to COCO, every region as it is --------------------------


def _plain_polygon(shape_name: str, s: dict) -> List[float]:
    """The region's outline as a flat polygon, without any check."""
    import cv2

    if shape_name in ("polygon", "polyline"):
        return [v for xy in zip(s["all_points_x"], s["all_points_y"]) for v in xy]
    if shape_name == "rect":
        x, y, w, h = (float(s[k]) for k in ("x", "y", "width", "height"))
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    if shape_name == "point":
        return [float(s["cx"]), float(s["cy"])]
    rx, ry = (s["r"], s["r"]) if shape_name == "circle" else (s["rx"], s["ry"])
    theta = math.degrees(float(s.get("theta", 0)))
    points = cv2.ellipse2Poly((int(s["cx"]), int(s["cy"])), (int(rx), int(ry)), int(theta), 0, 360, 10)
    return points.astype(float).ravel().tolist()


def _plain_coco_via(path: str, image_root: str) -> dict:
    from PIL import Image

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    records = data.get("_via_img_metadata", data)
    images, annotations, labels = [], [], {}
    for record in records.values():
        with Image.open(os.path.join(image_root, record["filename"])) as im:
            width, height = im.size
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": record["filename"], "width": width, "height": height})
        regions = record["regions"]
        for region in regions.values() if isinstance(regions, dict) else regions:
            shape = region["shape_attributes"]
            values = [v for v in region.get("region_attributes", {}).values() if isinstance(v, str) and v]
            label = values[0] if values else "object"
            annotations.append((image_id, label, _plain_polygon(shape["name"], shape)))
    return _plain_coco(images, annotations)


def _plain_coco_labelme(folder: str) -> dict:
    from PIL import Image

    images, annotations = [], []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            data = json.load(f)
        if "shapes" not in data:
            continue
        file_name = data["imagePath"].replace("\\", "/")
        with Image.open(os.path.join(folder, file_name)) as im:
            width, height = im.size
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for shape in data["shapes"]:
            points = [float(v) for p in shape["points"] for v in p]
            if shape.get("shape_type") == "rectangle":
                (x0, y0, x1, y1) = points
                points = [x0, y0, x1, y0, x1, y1, x0, y1]
            annotations.append((image_id, shape["label"] or "object", points))
    return _plain_coco(images, annotations)


def _plain_coco(images, instances) -> dict:
    labels = sorted({label for _, label, _ in instances})
    annotations = []
    for k, (image_id, label, polygon) in enumerate(instances, start=1):
        try:
            xs, ys = [float(v) for v in polygon[0::2]], [float(v) for v in polygon[1::2]]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        except (TypeError, ValueError):
            bbox = []
        annotations.append({"id": k, "image_id": image_id, "category_id": labels.index(label) + 1,
                            "bbox": bbox, "segmentation": [polygon], "area": 1.0, "iscrowd": 0})
    categories = [{"id": i + 1, "name": label} for i, label in enumerate(labels)]
    return {"images": images, "annotations": annotations, "categories": categories}


def plain_coco(fmt: str, path: str, image_root: str, scratch: str) -> str:
    """The COCO json Detectron2 alone reads for ``path``: itself for COCO, else the plain
    conversion written in ``scratch``."""
    if fmt == "coco":
        return path
    data = _plain_coco_labelme(path) if fmt == "labelme" else _plain_coco_via(path, image_root)
    target = os.path.join(scratch, "plain.json")
    with open(target, "w") as f:
        json.dump(data, f)
    return target


# -- Detectron2's path: loader, mapper, one step ----------------------------------------------


_MODELS: Dict[tuple, tuple] = {}
# One model for every dataset (the class ids of a corpus dataset are < 8): built once, before the
# forks, so that no run pays for a build.
_NUM_CLASSES = 8


def _cfg(num_classes: int, mask_format: str):
    """``mask_format`` "none": MODEL.MASK_ON False."""
    sys.path.insert(0, os.path.join(_REPO, "tests"))
    from tiny_run import BASE_CONFIG

    from gn_det.engine.setup import build_config

    # The main job's GN Mask R-CNN made tiny: an R50 of 1/8 width (0.2 s a step on 3 images).
    args = argparse.Namespace(config_file=BASE_CONFIG, opts=[
        "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MASK_FORMAT", "polygon" if mask_format == "none" else mask_format,
        "MODEL.MASK_ON", str(mask_format != "none"),
        "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes), "MODEL.RESNETS.DEPTH", "50",
        "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.RES2_OUT_CHANNELS", "32",
        "MODEL.RESNETS.WIDTH_PER_GROUP", "8", "MODEL.GN.NUM_GROUPS", "8", "MODEL.FPN.OUT_CHANNELS", "16",
        "MODEL.ROI_BOX_HEAD.NUM_CONV", "1", "MODEL.ROI_BOX_HEAD.CONV_DIM", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
        "MODEL.ROI_MASK_HEAD.NUM_CONV", "1", "MODEL.ROI_MASK_HEAD.CONV_DIM", "16",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "100", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32",
    ])
    return build_config(args)


def _model(num_classes: int, mask_format: str):
    from detectron2.modeling import build_model

    key = (num_classes, mask_format)
    if key not in _MODELS:
        # One thread: the runs are forked children, and an OpenMP pool that ran in the parent
        # deadlocks a child that uses it (libgomp is not fork-safe).
        torch.set_num_threads(1)
        cfg = _cfg(num_classes, mask_format)
        torch.manual_seed(0)
        model = build_model(cfg)
        model.train()
        _MODELS[key] = (cfg, model, copy.deepcopy(model.state_dict()))
    return _MODELS[key]


@dataclass
class Run:
    """What happened on Detectron2's path: ``stage`` is "" when it trained one step, else where
    it stopped ("load", "mapper", "step": an exception; "loss": a non-finite loss; "empty":
    Detectron2's build asserts that no training record is left)."""

    stage: str = ""
    error: str = ""
    images: int = 0  # records the mapper turned into training inputs
    instances: int = 0  # instances reaching the model (after Detectron2's own filters)
    annotations_in: int = 0  # annotations in the json
    annotations_loaded: int = 0  # annotations in the loaded dataset dicts

    @property
    def trains(self) -> bool:
        return self.stage == ""

    def describe(self) -> str:
        if self.trains:
            return f"trains ({self.instances} instances)"
        return f"crashes in {self.stage}: {self.error[:160]}"

    def cell(self) -> str:
        """The docs table's short form."""
        if not self.trains:
            return {"empty": "stops: no usable annotation", "loss": "non-finite loss"}.get(self.stage, f"crashes ({self.stage})")
        left_out = self.annotations_in - self.instances
        return "trains" + (f", leaves out {left_out}" if left_out > 0 else "")


@contextlib.contextmanager
def _quiet():
    loggers = [logging.getLogger(n) for n in ("detectron2", "d2", "fvcore")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".replace("\n", " ")


def train_one_step(dicts: List[dict], num_classes: int, mask_format: str, run: Run) -> Run:
    """Detectron2's training-set filter, its DatasetMapper over every record, one step."""
    from detectron2.data import DatasetMapper
    from detectron2.data.build import filter_images_with_only_crowd_annotations
    from detectron2.utils.events import EventStorage

    if num_classes > _NUM_CLASSES:
        raise ValueError(f"the harness's model has {_NUM_CLASSES} classes; the dataset has {num_classes}")
    cfg, model, weights = _model(_NUM_CLASSES, mask_format)
    run.annotations_loaded = sum(len(d.get("annotations", [])) for d in dicts)
    with _quiet():
        dicts = filter_images_with_only_crowd_annotations(dicts)
    if not dicts:
        run.stage, run.error = "empty", "no image with a usable (non-crowd) annotation is left"
        return run
    mapper = DatasetMapper(cfg, is_train=True)
    batch = []
    np.random.seed(0)
    for record in dicts:
        try:
            batch.append(mapper(record))
        except Exception as e:  # noqa: BLE001  every failure is the finding
            run.stage, run.error = "mapper", _error(e)
            return run
    run.images = len(batch)
    run.instances = sum(len(b["instances"]) for b in batch)
    model.load_state_dict(weights)
    torch.manual_seed(0)
    try:
        with EventStorage(0), _quiet():
            losses = model(batch)
            total = sum(losses.values())
            total.backward()
    except Exception as e:  # noqa: BLE001
        run.stage, run.error = "step", _error(e)
        return run
    finally:
        model.zero_grad(set_to_none=True)
    bad = {k: float(v) for k, v in losses.items() if not torch.isfinite(v)}
    if bad:
        run.stage, run.error = "loss", f"non-finite losses {bad}"
    return run


def _load(json_file: str, image_root: str) -> tuple:
    from detectron2.data import MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    name = f"differential_{uuid.uuid4().hex[:8]}"
    try:
        with _quiet():
            return load_coco_json(json_file, image_root, name), len(MetadataCatalog.get(name).thing_classes)
    finally:
        MetadataCatalog.remove(name)


def _annotations_in(json_file: str) -> int:
    try:
        with open(json_file, encoding="utf-8") as f:
            return len(json.load(f).get("annotations", []))
    except (OSError, ValueError, AttributeError):
        return -1


def _detectron2_path(json_file: str, image_root: str, mask_format: str) -> Run:
    run = Run()
    try:
        dicts, num_classes = _load(json_file, image_root)
    except Exception as e:  # noqa: BLE001
        run.stage, run.error = "load", _error(e)
        return run
    return train_one_step(dicts, num_classes, mask_format, run)


# Memory a run may add: pycocotools, given a NaN polygon coordinate, allocates without bound.
_MEMORY_LIMIT_BYTES = 3 << 30


def detectron2_alone(json_file: str, image_root: str, mask_format: str = "polygon") -> Run:
    """Detectron2's path on a COCO json (see the module docstring), in a forked child process
    with a memory limit, so that a run that crashes the process is a finding, not the end."""
    import multiprocessing
    import resource

    _model(_NUM_CLASSES, mask_format)  # built in the parent: children share it (fork)
    reader, writer = multiprocessing.Pipe(duplex=False)
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            reader.close()
            # A crash here is a finding the parent reports; pytest's faulthandler would also
            # print the dead child's stack into the suite's log.
            import faulthandler

            faulthandler.disable()
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (used + _MEMORY_LIMIT_BYTES, resource.RLIM_INFINITY))
            try:
                run = _detectron2_path(json_file, image_root, mask_format)
            except MemoryError:
                run = Run(stage="step", error="MemoryError: ran out of memory")
            writer.send(run)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    writer.close()
    try:
        run = reader.recv()
    except EOFError:
        run = None
    _, status = os.waitpid(pid, 0)
    if run is None:
        run = Run(stage="step", error=f"the process died (wait status {status}; out of memory?)")
    run.annotations_in = _annotations_in(json_file)
    return run


# -- gn_det's verdict -------------------------------------------------------------------------


@dataclass
class Verdict:
    """gn_det's decision on a dataset and, where it accepts, Detectron2's path on what it hands
    training. ``outcome``: "trains" (as it is), "warns", "repairs", "drops" (the most
    consequential of them) or "refuses"."""

    outcome: str
    kinds: Dict[str, int] = field(default_factory=dict)  # finding kind -> count
    message: str = ""  # the report, as printed
    run: Optional[Run] = None
    counts: object = None  # gn_det's DatasetCounts
    deciding: List[str] = field(default_factory=list)  # the kinds of the outcome
    trained: int = 0  # annotations in what gn_det hands training

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        return f"{self.outcome}" + (f" ({kinds})" if kinds else "")

    def cell(self) -> str:
        """The docs table's short form: the outcome and the kinds that decided it."""
        if self.outcome == "trains":
            return "trains"
        return f"{self.outcome}: " + ", ".join(sorted(self.deciding))


_ORDER = ("trains", "warns", "repairs", "drops", "refuses")


def gn_det_verdict(fmt: str, path: str, image_root: str, scratch: str, mask_format: str = "polygon",
                   strict: bool = False, skip_invalid: bool = False, reuse: Optional[tuple] = None) -> Verdict:
    """gn_det's verdict; ``scratch``: a folder for the json training would read;
    ``reuse=(json, run)``: Detectron2's run on that json, taken as is when gn_det hands training
    that very file."""
    from collections import Counter

    from gn_det.validation import check_dataset

    with _quiet():
        result = check_dataset(path, image_root, require_masks=mask_format != "none", strict=strict,
                               skip_invalid=skip_invalid, mask_format=mask_format)
    report = result.report
    kinds = Counter(p.kind for p in report.problems)
    if not result.ok or result.data is None:
        return Verdict("refuses", dict(kinds), report.format(max_per_kind=5), counts=result.counts,
                       deciding=sorted({p.kind for p in report.errors}))
    steps = {p.kind: {"warning": "warns", "repair": "repairs", "drop": "drops", "error": "drops"}[p.outcome]
             for p in report.problems}
    outcome = max(steps.values(), key=_ORDER.index, default="trains")
    verdict = Verdict(outcome, dict(kinds), report.format(max_per_kind=5), counts=result.counts,
                      deciding=sorted(k for k, step in steps.items() if step == outcome),
                      trained=len(result.data["annotations"]))
    if result.changed or fmt != "coco":
        target = os.path.join(tempfile.mkdtemp(dir=scratch), "checked.json")
        with open(target, "w") as f:
            json.dump(result.data, f)
    else:
        target = path  # training reads the file as it is
    if reuse is not None and reuse[0] == target:
        verdict.run = reuse[1]
    else:
        verdict.run = detectron2_alone(target, image_root, mask_format)
    return verdict


@dataclass
class Comparison:
    fmt: str
    detectron2: Run
    default: Verdict
    strict: Verdict
    skip_invalid: Optional[Verdict] = None  # where the default refuses records: with --skip-invalid

    def violations(self) -> List[str]:
        """Where gn_det breaks the rule (docs/validation.md)."""
        from gn_det.validation.policy import RULES

        out = []
        d2, default, strict = self.detectron2, self.default, self.strict
        if default.outcome == "refuses" and d2.trains:
            learned_wrongly = [k for k in default.kinds if RULES[k].learned_wrongly]
            if not learned_wrongly:
                out.append(f"refused ({default.describe()}) where Detectron2 trains")
        if default.outcome == "trains" and not d2.trains:
            out.append(f"accepted unchanged where Detectron2 {d2.describe()}")
        if default.outcome != "refuses":
            if not default.run.trains:
                out.append(f"accepted, but what it hands training {default.run.describe()}")
            if strict.outcome != "refuses" and default.outcome != "trains":
                out.append(f"--strict accepts what the default {default.outcome}")
        if default.outcome == "refuses":
            out += self._way_forward_violations()
        if default.outcome == "trains" and strict.outcome != "trains":
            out.append(f"--strict {strict.describe()} what the default trains unchanged")
        if default.outcome != "refuses":
            c = default.counts
            if c.annotations_in - c.annotations_dropped != default.trained:
                out.append(f"counts do not add up: {c.describe()}, but {default.trained} annotations go to training")
            if self.fmt != "labelme" and c.annotations_in != d2.annotations_in and d2.annotations_in >= 0:
                out.append(f"{c.annotations_in} annotations counted in, the file has {d2.annotations_in}")
        return out

    def _way_forward_violations(self) -> List[str]:
        """A refusal says how to go on: --skip-invalid and how many records it drops (and that
        run trains), or, for the file as a whole, to fix it."""
        from gn_det.validation.policy import RULES

        default, skip = self.default, self.skip_invalid
        if skip is None:
            return [] if "fix them" in default.message else ["the refusal does not say how to go on"]
        c = default.counts
        expected = (f"add --skip-invalid: it drops {c.skippable_annotations} annotation(s) and "
                    f"{c.skippable_images} image(s)")
        out = [] if expected in default.message else [f"the refusal does not say '{expected}'"]
        if skip.outcome == "refuses":
            out.append(f"--skip-invalid still refuses: {skip.describe()}")
        elif not skip.run.trains:
            out.append(f"with --skip-invalid, what it hands training {skip.run.describe()}")
        elif c.skippable_annotations + c.annotations_dropped != skip.counts.annotations_dropped:
            out.append(f"the refusal announced {c.skippable_annotations} annotations to drop; --skip-invalid "
                       f"dropped {skip.counts.annotations_dropped - c.annotations_dropped}")
        return out

    def row(self, kind) -> str:
        """docs/validation.md's table row for corpus ``kind``."""
        return (f"| {kind.fmt} | `{kind.name}` | {kind.what} | {self.detectron2.cell()} | {self.default.cell()} | "
                f"{self.strict.cell()} |")


def compare(fmt: str, path: str, image_root: str, mask_format: str = "polygon") -> Comparison:
    """``fmt``: "coco", "via1", "via2", "labelme", or "real" (detected from the file)."""
    if fmt == "real":
        from gn_det.data.formats import detect_format

        fmt = {"via": "via2"}.get(detect_format(path)[0], detect_format(path)[0])
    # The jsons written for the runs (plain conversion, gn_det's checked copies) go once compared.
    with tempfile.TemporaryDirectory(prefix="differential_") as scratch:
        try:
            plain = plain_coco(fmt, path, image_root, scratch)
            d2 = detectron2_alone(plain, image_root, mask_format)
        except Exception as e:  # noqa: BLE001  the plain converter itself failed: Detectron2 has no input
            d2 = Run(stage="load", error=_error(e))
        from gn_det.validation.policy import RULES

        default = gn_det_verdict(fmt, path, image_root, scratch, mask_format,
                                 reuse=(path, d2) if fmt == "coco" else None)
        strict = gn_det_verdict(fmt, path, image_root, scratch, mask_format, strict=True)
        skip = None
        if default.outcome == "refuses" and not any(RULES[k].file_level for k in default.deciding):
            skip = gn_det_verdict(fmt, path, image_root, scratch, mask_format, skip_invalid=True)
    return Comparison(fmt, d2, default, strict, skip)


def corpus_rows() -> List[str]:
    """Every corpus mutation through the harness: docs/validation.md's table rows."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import corpus

    os.environ["GN_DET_CACHE_DIR"] = tempfile.mkdtemp(prefix="differential_cache_")
    rows = []
    for key in sorted(corpus.KINDS, key=lambda k: (corpus.FORMATS.index(k[0]), k[1])):
        path, image_root, mask_format = corpus.write(*key, tempfile.mkdtemp(prefix="corpus_"))
        rows.append(compare(key[0], path, image_root, mask_format).row(corpus.KINDS[key]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="COCO json, VIA json or labelme folder")
    parser.add_argument("image_dir", nargs="?")
    parser.add_argument("--mask-format", default="polygon", choices=("polygon", "bitmask", "none"),
                        help="INPUT.MASK_FORMAT; none: MODEL.MASK_ON False")
    parser.add_argument("--corpus", action="store_true", help="print the corpus table of docs/validation.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, _REPO)
    if args.corpus:
        print("\n".join(corpus_rows()))
        return 0
    if not (args.file and args.image_dir):
        parser.error("give FILE IMAGE_DIR, or --corpus")
    from gn_det.data.formats import detect_format

    fmt = detect_format(args.file)[0]
    fmt = "via2" if fmt == "via" else fmt
    result = compare(fmt, args.file, args.image_dir, args.mask_format)
    print(f"Detectron2 alone: {result.detectron2.describe()}")
    print(f"gn_det default:   {result.default.describe()}" + (f"; then {result.default.run.describe()}" if result.default.run else ""))
    print(f"gn_det --strict:  {result.strict.describe()}")
    for line in result.violations():
        print(f"RULE BROKEN: {line}")
    return 1 if result.violations() else 0


if __name__ == "__main__":
    sys.exit(main())
