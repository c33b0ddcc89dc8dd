"""Command-line side of validation: the flags tools share, and running ``validate`` from them."""
import argparse
import logging
import os
from typing import Callable, Optional

from ..checkpoint.safe_load import TRUST_ENV_VAR
from .checkpoint_checks import check_checkpoint
from .coco_checks import check_coco_json
from .config_checks import default_base_cfg
from .report import ValidationReport
from .validate import validate

__all__ = ["add_validation_arguments", "validate_args", "validate_args_or_exit", "REPORT_NAME"]

logger = logging.getLogger(__name__)

REPORT_NAME = "validation_report.json"
# Lines per kind of problem printed to the console; the report file has all of them.
_MAX_PRINTED_PER_KIND = 20


def add_validation_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--skip-invalid``, ``--trust-checkpoint`` and ``--no-image-check``."""
    group = parser.add_argument_group("input validation (gn_det)")
    group.add_argument(
        "--skip-invalid",
        action="store_true",
        help="drop invalid dataset records (each listed in OUTPUT_DIR/validation_report.json, "
        "counts logged) and train on the rest, instead of stopping",
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
    return max(1, int(getattr(args, "num_gpus", 1) or 1)) * max(1, int(getattr(args, "num_machines", 1) or 1))


def validate_args(
    args,
    *,
    base_cfg: Callable = default_base_cfg,
    prepare_dataset: Optional[Callable[[str], None]] = None,
    apply_cleaned: bool = False,
    write_report: bool = True,
) -> ValidationReport:
    """Validate what a tool run described by ``args`` (Detectron2's argument names plus
    add_validation_arguments') will read, and log the report.

    Sets ``args.cleaned_datasets`` ({name: cleaned json}) for the training processes, and
    ``$GN_DET_TRUST_CHECKPOINT`` under --trust-checkpoint (inherited by launch's workers).
    The full report goes to ``OUTPUT_DIR/validation_report.json``.
    """
    if getattr(args, "trust_checkpoint", False):
        os.environ[TRUST_ENV_VAR] = "1"
    report = validate(
        getattr(args, "config_file", None) or None,
        list(getattr(args, "opts", None) or []),
        base_cfg=base_cfg,
        num_processes=_num_processes(args),
        resume=bool(getattr(args, "resume", False)),
        eval_only=bool(getattr(args, "eval_only", False)),
        skip_invalid=bool(getattr(args, "skip_invalid", False)),
        check_images=not getattr(args, "no_image_check", False),
        apply_cleaned=apply_cleaned,
        prepare_dataset=prepare_dataset,
    )
    args.cleaned_datasets = dict(report.cleaned_datasets)
    if write_report and report.cfg is not None and report.cfg.OUTPUT_DIR:
        try:
            os.makedirs(report.cfg.OUTPUT_DIR, exist_ok=True)
            path = os.path.join(report.cfg.OUTPUT_DIR, REPORT_NAME)
            report.write_json(path)
            report.checked.append(f"report written to {path}")
        except OSError as e:
            logger.warning(f"Could not write the validation report into OUTPUT_DIR: {e}")
    text = report.format(max_per_kind=_MAX_PRINTED_PER_KIND)
    (logger.info if report.ok else logger.error)("Input validation:\n" + text)
    return report


def validate_args_or_exit(args, **kwargs) -> ValidationReport:
    """validate_args, then stop the program (exit status 1, the report on stderr) if it failed."""
    report = validate_args(args, **kwargs)
    if not report.ok:
        raise SystemExit("Input validation failed; nothing was built or trained.\n"
                         + report.format(max_per_kind=_MAX_PRINTED_PER_KIND))
    return report


def check_files(coco_jsons, checkpoints, *, skip_invalid: bool = False, check_images: bool = True,
                trust: Optional[bool] = None) -> ValidationReport:
    """Standalone checks of COCO jsons (``(json, image_root)`` pairs) and checkpoint files."""
    report = ValidationReport()
    for json_file, image_root in coco_jsons or []:
        result = check_coco_json(json_file, image_root, skip_invalid=skip_invalid, check_images=check_images)
        report.extend(result.report)
    for path in checkpoints or []:
        check_checkpoint(path, where="--checkpoint", trust=trust, report=report)
    return report
