"""``tools/export_model.py``: export a trained checkpoint, then verify the artifact.

Follows Detectron2's ``tools/deploy/export_model.py`` (``--config-file``, ``--format``,
``--export-method``, ``--sample-image``, ``--output``, trailing ``KEY VALUE`` overrides). The
default is torch's current path, ``torch.export`` to a ``.pt2`` (``--format onnx``: torch.onnx's
``torch.export``-based exporter); TorchScript (``--format torchscript``) and the TorchScript-based
ONNX exporter (``--format onnx --export-method tracing``) stay available by name. With
gn_det's conventions: ``--weights`` (or ``MODEL.WEIGHTS``) and the ``config.yaml`` next to the
checkpoint as the default config, the checkpoint loaded through gn_det's checkpointer (a class
count that does not fit refuses to export), and a verification step that runs the artifact and
the eager model on the same images, prints the largest differences and both times per image,
and fails past ``verify.TOLERANCES``.
"""

import argparse
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional

import torch
import detectron2.data.transforms as T
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import GeneralizedRCNN, build_model

from ..checkpoint.dataset_metadata import find_dataset_metadata
from ..data import prepare_dataset
from ..engine.setup import build_config, config_file_for_weights, datasets_of_run, register_datasets_from_args
from ..engine.train_net import Trainer
from ..third_party_warnings import ignore_third_party_warnings
from .exporters import (
    DEFAULT_ONNX_OPSET,
    EXPORT_METHODS,
    FORMATS,
    export_scripting,
    export_tracing,
    torchscript_on_purpose,
    tracing_adapter,
)
from .model_checks import check_model_matches_config
from .programs import export_onnx_dynamo, export_pt2, min_image_side
from .verify import (
    TOLERANCES,
    ExportVerificationError,
    VerificationReport,
    detections_of,
    load_exported,
    scripted_detections,
    time_per_image_ms,
)

__all__ = ["argument_parser", "export_main", "load_model", "sample_images", "artifact_name", "export_method_of"]

logger = logging.getLogger("gn_det.export")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a gn_det checkpoint with torch.export (.pt2), to ONNX or to TorchScript "
        "(standard ops only) and verify it against the eager model.",
        epilog="Example: python3 tools/export_model.py --weights output/main/model_final.pth "
        "--output output/main/export",
    )
    parser.add_argument(
        "--weights",
        default="",
        metavar="PTH",
        help="checkpoint to export (or MODEL.WEIGHTS among the overrides)",
    )
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="config of the checkpoint (default: config.yaml next to the checkpoint)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="pt2",
        help="pt2: torch.export program (default); onnx; torchscript (deprecated by torch)",
    )
    parser.add_argument(
        "--export-method",
        choices=EXPORT_METHODS,
        default=None,
        help="export: torch.export (default for pt2 and onnx); tracing: TracingAdapter + torch.jit.trace "
        "or the TorchScript-based ONNX exporter (default for torchscript); scripting: TorchScript only",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help=f"ONNX opset (tracing: default {DEFAULT_ONNX_OPSET}, R-CNN RoIAlign needs >= 16; "
        "export: torch.onnx's default)",
    )
    parser.add_argument(
        "--sample-image",
        action="append",
        default=[],
        metavar="IMAGE",
        # repeatable, one file each: a list would also swallow the trailing KEY VALUE overrides
        help="image file (repeatable): the first is the export's sample input, all are verified",
    )
    parser.add_argument(
        "--dataset-name",
        default="",
        help="without --sample-image: take images from this registered dataset (default DATASETS.TEST[0])",
    )
    parser.add_argument("--num-images", type=int, default=4, help="images taken from the dataset")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes over the images")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=None, help="config overrides: KEY VALUE pairs"
    )
    return parser


def _weights_of(args) -> str:
    opts = list(args.opts or [])
    from_opts = opts[opts.index("MODEL.WEIGHTS") + 1] if "MODEL.WEIGHTS" in opts[0::2] else ""
    weights = args.weights or from_opts
    if not weights:
        raise ValueError("name the checkpoint to export: --weights PTH (or MODEL.WEIGHTS PTH)")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"checkpoint {weights!r} does not exist")
    return weights


def load_model(cfg, weights: str):
    """The eager model of ``cfg`` with ``weights``, in eval mode, refused when its class count is
    not the config's (``ValueError``)."""
    model = build_model(cfg)
    try:
        Trainer.build_checkpointer(cfg, model).load_for_inference(weights)
    except ValueError as e:
        raise ValueError(f"refusing to export: {e}") from e
    check_model_matches_config(model, cfg)
    return model.eval()


def _preprocess(cfg, image_bgr_or_rgb) -> torch.Tensor:
    # What DefaultPredictor does (and Detectron2's export_model.py): resize the short side.
    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
    image = aug.get_transform(image_bgr_or_rgb).apply_image(image_bgr_or_rgb)
    return torch.as_tensor(image.astype("float32").transpose(2, 0, 1))


def sample_images(cfg, paths: List[str], dataset_name: str = "", num_images: int = 4) -> List[torch.Tensor]:
    """(3, H, W) float model inputs from image files, else from the first images of a dataset."""
    if not paths:
        name = dataset_name or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
        if not name:
            raise ValueError("no images to trace and verify on: pass --sample-image or --dataset-name")
        if name not in DatasetCatalog:
            raise ValueError(f"dataset {name!r} is not registered; pass --sample-image IMAGE instead")
        paths = [record["file_name"] for record in DatasetCatalog.get(name)[:num_images]]
    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"sample image {path!r} does not exist")
        images.append(_preprocess(cfg, read_image(path, format=cfg.INPUT.FORMAT)))
    return images


def artifact_name(fmt: str) -> str:
    return {"onnx": "model.onnx", "pt2": "model.pt2"}.get(fmt, "model.ts")


# (format, method) pairs that exist; the first method listed per format is its default.
_METHODS_OF_FORMAT = {"pt2": ("export",), "onnx": ("export", "tracing"), "torchscript": ("tracing", "scripting")}


def export_method_of(fmt: str, method: Optional[str]) -> str:
    """The export method for ``--format fmt`` (``method`` None: the format's default); raises
    ValueError for a pair that does not exist."""
    methods = _METHODS_OF_FORMAT[fmt]
    if method is None:
        return methods[0]
    if method not in methods:
        raise ValueError(f"--format {fmt} is written by --export-method {' or '.join(methods)}, not {method!r}")
    return method


def _eager_and_exported(model, args, images, path):
    """Two functions image -> detections dict: the eager model and the saved artifact."""
    if args.export_method == "scripting":
        with torchscript_on_purpose():
            scripted = torch.jit.load(path, map_location="cpu")
        if isinstance(model, GeneralizedRCNN):
            eager = lambda im: detections_of(model.inference([{"image": im}], do_postprocess=False)[0])
        else:
            eager = lambda im: detections_of(model([{"image": im}])[0]["instances"])
        postprocess = not isinstance(model, GeneralizedRCNN)
        return eager, lambda im: scripted_detections(scripted(({"image": im},))[0], im.shape[1:], postprocess)
    adapter = tracing_adapter(model, images[0]).eval()  # the eager model, same output schema
    run = load_exported(path, args.format)

    def read(outputs):
        return detections_of(adapter.outputs_schema(list(outputs))[0]["instances"])

    return (lambda im: read(adapter(im))), (lambda im: read(run(im)))


def export_main(argv: Optional[List[str]] = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        args.export_method = export_method_of(args.format, args.export_method)
    except ValueError as e:
        parser.error(str(e))
    if args.export_method == "tracing" and args.format == "onnx" and args.opset is None:
        args.opset = DEFAULT_ONNX_OPSET
    ignore_third_party_warnings()
    logging.basicConfig(level=logging.INFO, format="[export] %(message)s")
    try:
        weights = _weights_of(args)
        args.config_file = args.config_file or config_file_for_weights(weights)
        args.opts = list(args.opts or []) + ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"]
        cfg = build_config(args)
        cfg.freeze()
        if not args.sample_image:
            # A custom dataset of the checkpoint's run is found again by name; a generated one
            # (the embedded shapes) is written now if it is not on disk.
            args.dataset_name = args.dataset_name or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
            args.dataset = datasets_of_run(weights, [args.dataset_name] if args.dataset_name else [])
            register_datasets_from_args(args)
            if args.dataset_name:
                prepare_dataset(args.dataset_name)
        model = load_model(cfg, weights)
        images = sample_images(cfg, args.sample_image, args.dataset_name, args.num_images)
    except (ValueError, FileNotFoundError, KeyError) as e:
        parser.error(str(e))

    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, artifact_name(args.format))
    if args.export_method != "export":
        logger.info(
            "torch 2.13 deprecates TorchScript (and the TorchScript-based ONNX exporter); the default "
            "--format pt2 (torch.export) is the non-deprecated path"
        )
    if args.export_method == "export" and min(images[0].shape[1:]) < min_image_side(model):
        parser.error(
            f"the first sample image is {tuple(images[0].shape[1:])} after resizing; torch.export needs "
            f"at least {min_image_side(model)} pixels a side for this model (largest backbone stride + 1)"
        )
    args.min_side = min_image_side(model) if args.export_method == "export" else None
    start = time.perf_counter()
    with torch.no_grad():
        if args.export_method == "scripting":
            export_scripting(model, path)
        elif args.export_method == "tracing":
            export_tracing(model, images[0], path, args.format, args.opset)
        elif args.format == "pt2":
            export_pt2(model, images[0], path)
        else:
            export_onnx_dynamo(model, images[0], path, args.opset)
    args.export_seconds = time.perf_counter() - start
    how = {
        "tracing": f"traced on a {tuple(images[0].shape)} image",
        "scripting": "scripted",
        "export": f"torch.export on a {tuple(images[0].shape)} image; any height and width "
        f">= {min_image_side(model)}",
    }[args.export_method]
    print(
        f"[export] wrote {path} ({args.format}"
        + (f", opset {args.opset}" if args.format == "onnx" and args.opset else "")
        + f", {how}; {args.export_seconds:.1f} s, {os.path.getsize(path) / 2**20:.1f} MiB)"
    )

    eager, exported = _eager_and_exported(model, args, images, path)
    report = VerificationReport(artifact=path)
    try:
        with torch.no_grad():
            for image in images:
                report.add(eager(image), exported(image))
        report.eager_ms = time_per_image_ms(eager, images, args.repeats)
        report.exported_ms = time_per_image_ms(exported, images, args.repeats)
        print("\n".join("[export] " + line for line in report.lines()))
        _write_info(args, cfg, weights, images, report)
        report.check(TOLERANCES)
    except ExportVerificationError as e:
        print(f"[export] FAILED: {e}", file=sys.stderr)
        return 1
    print("[export] verified: within tolerance")
    return 0


_EXPORTERS = {
    ("export", "pt2"): "torch.export",
    ("export", "onnx"): "torch.export + torch.onnx.export(dynamo=True)",
    ("tracing", "torchscript"): "TracingAdapter + torch.jit.trace",
    ("tracing", "onnx"): "TracingAdapter + torch.onnx.export(dynamo=False)",
    ("scripting", "torchscript"): "scripting_with_instances",
}


def _write_info(args, cfg, weights, images, report) -> None:
    # What a deployment needs beside the artifact: input convention, class names, the check.
    metadata = find_dataset_metadata(weights) or {}
    info: Dict = {
        "artifact": artifact_name(args.format),
        "format": args.format,
        "export_method": args.export_method,
        "opset": args.opset if args.format == "onnx" else None,
        "exporter": _EXPORTERS[(args.export_method, args.format)],
        "export_seconds": args.export_seconds,
        "artifact_bytes": os.path.getsize(os.path.join(args.output, artifact_name(args.format))),
        "input": {
            "format": cfg.INPUT.FORMAT,
            "layout": "(3, H, W) float32, 0-255, not normalized",
            "traced_size": list(images[0].shape[1:]),
            # torch.export programs take any height and width from this size up
            "min_side": args.min_side,
            "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
            "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        },
        "thing_classes": metadata.get("thing_classes"),
        "weights": os.path.abspath(weights),
        "verification": {
            "max_abs_difference": report.max(),
            "tolerance": TOLERANCES,
            "detections": report.detections,
            "compared": report.compared,
            "eager_ms_per_image": report.eager_ms,
            "exported_ms_per_image": report.exported_ms,
            "threads": torch.get_num_threads(),
        },
    }
    with open(os.path.join(args.output, "export.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
