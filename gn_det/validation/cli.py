"""Command-line side of validation: the flags tools share, and running ``validate`` from them."""

import argparse
import logging
import os
from typing import Callable, Optional

from ..checkpoint.safe_load import TRUST_ENV_VAR
from .checkpoint_checks import check_checkpoint
from .dataset_checks import check_dataset
from .config_checks import check_config_sources, default_base_cfg
from ..data.formats.common import DEFAULT_LABEL
from .report import ValidationReport
from .validate import check_run, cleaned_datasets_dir, write_cleaned_dataset

__all__ = ["add_validation_arguments", "validate_args", "validate_args_or_exit", "REPORT_NAME"]

logger = logging.getLogger(__name__)

REPORT_NAME = "validation_report.json"
# Lines per kind of problem printed to the console; the report file has all of them.
_MAX_PRINTED_PER_KIND = 20


def add_validation_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--skip-invalid``, ``--strict``, ``--trust-checkpoint`` and ``--no-image-check``."""
    group = parser.add_argument_group("input validation (gn_det)")
    group.add_argument(
        "--skip-invalid",
        action="store_true",
        help="drop the dataset records validation refuses (each listed in "
        "OUTPUT_DIR/validation_report.json, counts logged) and train on the rest, instead of stopping",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="make every dataset warning, repair and drop an error (numbers as strings, boxes "
        "recomputed from masks, degenerate instances, unlabelled regions, unused categories, ...); "
        "see docs/validation.md for the rule",
    )
    group.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load checkpoints with plain pickle even if they contain more than weights; this can "
        "run code from the file: only for files from a source you trust",
    )
    group.add_argument(
        "--no-image-check",
        action="store_true",
        help="do not open image headers (existence, readability, size) during validation",
    )
    return parser


def _num_processes(args) -> int:
    return max(1, int(getattr(args, "num_gpus", 1) or 1)) * max(
        1, int(getattr(args, "num_machines", 1) or 1)
    )


def _register_dataset_entries(args, cfg, report: ValidationReport, register_dataset, skip_invalid: bool,
                              check_images: bool, strict: bool = False) -> set:
    """Check each ``args.dataset`` entry ([name, file, image_dir]: COCO, VIA or labelme) in one
    read, and register it with ``register_dataset`` from what was read: the file itself when
    nothing changed, else the repaired / cleaned json (written to OUTPUT_DIR/validated_datasets;
    for VIA / labelme, the converted one). ``args.dataset`` is pointed at the json registered and
    ``args.dataset_metadata`` holds what the training processes register it with, without
    reading it. Returns the names checked here.
    """
    checked = set()
    entries, metadata = [], dict(getattr(args, "dataset_metadata", None) or {})
    unlabeled_class = getattr(args, "unlabeled_class", None) or DEFAULT_LABEL
    for name, path, image_root in getattr(args, "dataset", None) or []:
        entry = [name, path, image_root]
        entries.append(entry)
        if name in checked:
            continue
        checked.add(name)
        result = check_dataset(
            path,
            image_root,
            dataset_name=name,
            skip_invalid=skip_invalid,
            strict=strict,
            unlabeled_class=unlabeled_class,
            require_masks=bool(cfg.MODEL.MASK_ON),
            for_evaluation=name in cfg.DATASETS.TEST,
            for_training=not getattr(args, "eval_only", False) and name in cfg.DATASETS.TRAIN,
            check_images=check_images,
            mask_format=cfg.INPUT.MASK_FORMAT,
            header_cache_dir=cleaned_datasets_dir(cfg),
        )
        report.extend(result.report)
        if result.data is None:
            continue
        json_file = result.json_file
        if result.changed:
            json_file = write_cleaned_dataset(cleaned_datasets_dir(cfg), name, result.data)
            report.cleaned_datasets[name] = json_file
        try:
            register_dataset(name, json_file, image_root, metadata=result.metadata, parsed=result.data)
        except ValueError as error:  # the name is taken by other files
            report.add("dataset-registration", f"--dataset {name} {path} {image_root}", str(error))
            continue
        entry[1] = json_file
        metadata[name] = result.metadata
    if getattr(args, "dataset", None) is not None:
        args.dataset = entries
        args.dataset_metadata = metadata
    return checked


def validate_args(
    args,
    *,
    base_cfg: Callable = default_base_cfg,
    register_dataset: Optional[Callable[[str, str, str], object]] = None,
    prepare_dataset: Optional[Callable[[str], None]] = None,
    write_report: bool = True,
) -> ValidationReport:
    """Validate what a tool run described by ``args`` will read, and log the report.

    ``args`` has Detectron2's argument names (``config_file``, ``opts``, ``num_gpus``,
    ``num_machines``, ``resume``, ``eval_only``), add_validation_arguments' flags and optionally
    ``dataset`` ([name, json, image_dir] entries, registered with ``register_dataset``).
    ``prepare_dataset(name)`` generates a dataset on disk before its json is checked.

    Afterwards ``args.cleaned_datasets`` maps datasets cleaned under --skip-invalid to their
    cleaned json (apply it in each training process with use_cleaned_datasets, after registering
    the datasets), and --trust-checkpoint has set ``$GN_DET_TRUST_CHECKPOINT`` for launch's workers.
    The full report goes to ``OUTPUT_DIR/validation_report.json``.
    """
    if getattr(args, "trust_checkpoint", False):
        os.environ[TRUST_ENV_VAR] = "1"
    skip_invalid = bool(getattr(args, "skip_invalid", False))
    strict = bool(getattr(args, "strict", False))
    check_images = not getattr(args, "no_image_check", False)
    training = not getattr(args, "eval_only", False)

    report = ValidationReport()
    cfg, _ = check_config_sources(
        getattr(args, "config_file", None) or None,
        list(getattr(args, "opts", None) or []),
        base_cfg=base_cfg,
        report=report,
    )
    report.cfg = cfg
    checked = set()
    if register_dataset is not None:
        checked = _register_dataset_entries(
            args, cfg, report, register_dataset, skip_invalid, check_images, strict
        )
    check_run(
        cfg,
        report,
        num_processes=_num_processes(args),
        resume=bool(getattr(args, "resume", False)),
        eval_only=not training,
        skip_invalid=skip_invalid,
        strict=strict,
        check_images=check_images,
        apply_cleaned=False,
        prepare_dataset=prepare_dataset,
        skip_names=checked,
    )
    args.cleaned_datasets = dict(report.cleaned_datasets)

    if write_report and cfg.OUTPUT_DIR:
        try:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            path = os.path.join(cfg.OUTPUT_DIR, REPORT_NAME)
            report.report_path = path
            report.checked.append(f"report written to {path}")
            report.write_json(path)
        except OSError as e:
            logger.warning(f"Could not write the validation report into OUTPUT_DIR: {e}")
    if report.ok:
        logger.info(
            "Input validation passed" + (":\n" + report.summary() if report.problems else "")
        )
    else:
        logger.error("Input validation:\n" + report.format(max_per_kind=_MAX_PRINTED_PER_KIND))
    return report


def validate_args_or_exit(args, **kwargs) -> ValidationReport:
    """validate_args for a tool's main process, before ``launch``: prints the report when there is
    anything to say (logging is not set up yet there), and stops the program (exit status 1,
    the report on stderr) if the run cannot start. A run that goes on prints one short summary
    of the warnings and dropped records (counts by kind, a few examples, the full list's path)."""
    report = validate_args(args, **kwargs)
    if not report.ok:
        text = report.format(max_per_kind=_MAX_PRINTED_PER_KIND)
        raise SystemExit("Input validation failed; nothing was built or trained.\n" + text)
    if report.problems:
        print("Input validation passed, the run goes on:\n" + report.summary(), flush=True)
    return report


def check_files(
    coco_jsons,
    checkpoints,
    *,
    skip_invalid: bool = False,
    strict: bool = False,
    check_images: bool = True,
    trust: Optional[bool] = None,
) -> ValidationReport:
    """Standalone checks of datasets (``(file, image_root)`` pairs: COCO json, VIA json or a
    folder of labelme files) and checkpoint files."""
    report = ValidationReport()
    for json_file, image_root in coco_jsons or []:
        result = check_dataset(
            json_file,
            image_root,
            skip_invalid=skip_invalid,
            strict=strict,
            check_images=check_images,
        )
        report.extend(result.report)
    for path in checkpoints or []:
        check_checkpoint(path, where="--checkpoint", trust=trust, report=report)
    return report
