"""Validation before training: config, datasets (COCO, VIA, labelme) and checkpoints, all
problems in one report; what happens to each dataset finding is the rule of policy.py.

``validate(config_file, opts, ...)`` is the one entry; the checks are also usable one by one.
"""

from .checkpoint_checks import check_checkpoint, resolve_checkpoint_path
from .cli import add_validation_arguments, validate_args, validate_args_or_exit
from .coco_checks import CocoCheckResult, check_coco_json
from .config_checks import build_on_meta_device, check_config, check_config_sources, default_base_cfg
from .dataset_checks import check_dataset
from .geometry import polygon_problem, rle_problem
from .policy import MIN_INSIDE_FRACTION, RULES
from .report import DatasetCounts, Problem, ValidationError, ValidationReport
from .validate import checkpoint_to_load, use_cleaned_datasets, validate, validate_datasets

__all__ = [
    "validate",
    "validate_args",
    "validate_args_or_exit",
    "add_validation_arguments",
    "validate_datasets",
    "use_cleaned_datasets",
    "checkpoint_to_load",
    "check_checkpoint",
    "resolve_checkpoint_path",
    "check_dataset",
    "check_coco_json",
    "RULES",
    "MIN_INSIDE_FRACTION",
    "CocoCheckResult",
    "DatasetCounts",
    "check_config",
    "check_config_sources",
    "build_on_meta_device",
    "default_base_cfg",
    "polygon_problem",
    "rle_problem",
    "Problem",
    "ValidationError",
    "ValidationReport",
]
