"""Command line and config set-up shared by gn_det's tools (Detectron2's conventions).

``setup(args)`` is the one place where a run's config is built and finalized, before any model
exists: get_cfg + add_gn_config, datasets registered from ``--dataset``, the YAML and trailing
overrides merged, ``finalize_config`` (class count from the datasets, consistency checks),
freeze, then Detectron2's ``default_setup`` (logging, config.yaml, seeds). Checks that must run
before a model is built belong in ``finalize_config``.
"""
import argparse
import logging
from typing import List, Optional

from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_gn_config
from ..data import prepare_dataset, register_coco_dataset
from ..validation import add_validation_arguments, use_cleaned_datasets, validate_args_or_exit

__all__ = [
    "argument_parser",
    "add_dataset_arguments",
    "launch_from_args",
    "validate_and_launch",
    "register_datasets_from_args",
    "build_config",
    "finalize_config",
    "setup",
    "NUM_CLASSES_KEYS",
]

logger = logging.getLogger(__name__)

# Config keys that hold the number of classes, per meta-architecture family.
NUM_CLASSES_KEYS = ("MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES")


def add_dataset_arguments(
    parser: argparse.ArgumentParser,
    help: str = "register a COCO-format dataset under NAME (repeatable); then use NAME in "
    "DATASETS.TRAIN / DATASETS.TEST. MODEL.ROI_HEADS.NUM_CLASSES is taken from its json.",
) -> argparse.ArgumentParser:
    """``--dataset NAME JSON IMAGE_DIR`` (repeatable), read by ``register_datasets_from_args``."""
    parser.add_argument(
        "--dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_DIR"),
        help=help,
    )
    return parser


def argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--dataset NAME JSON IMAGE_DIR``."""
    return add_validation_arguments(add_dataset_arguments(default_argument_parser(epilog)))


def launch_from_args(main_fn, args: argparse.Namespace):
    """Detectron2's ``launch`` driven by its own command-line arguments (``--num-gpus``,
    ``--num-machines``, ``--machine-rank``, ``--dist-url``): ``main_fn(args)`` in every process."""
    return launch(
        main_fn,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def validate_and_launch(main_fn, args: argparse.Namespace):
    """What a tool's ``__main__`` does: every check that can fail before a model is built
    (config, datasets, checkpoint; exits with the whole report if the run cannot start), then
    ``launch_from_args``."""
    validate_args_or_exit(args, register_dataset=register_coco_dataset, prepare_dataset=prepare_dataset)
    return launch_from_args(main_fn, args)


def register_datasets_from_args(args) -> None:
    for name, json_file, image_root in getattr(args, "dataset", None) or []:
        register_coco_dataset(name, json_file, image_root)


def build_config(args) -> CfgNode:
    """get_cfg + gn_det's keys, the ``--config-file`` YAML, then the trailing overrides."""
    cfg = get_cfg()
    add_gn_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []))
    return cfg


def _command_line_keys(args) -> List[str]:
    opts = list(args.opts or [])
    return opts[0::2]


def _dataset_classes(name: str, role: str) -> Optional[List[str]]:
    if name not in DatasetCatalog:
        registered = sorted(DatasetCatalog.list())
        raise KeyError(
            f"{role} names dataset {name!r}, which is not registered. Register a COCO-format dataset "
            f"with --dataset {name} JSON IMAGE_DIR, or use one of: {', '.join(registered)}"
        )
    return MetadataCatalog.get(name).get("thing_classes")


def _set_num_classes_from_datasets(cfg: CfgNode, args) -> None:
    """NUM_CLASSES from the datasets' class lists, which must agree with each other.

    Training runs take it from DATASETS.TRAIN (the test sets must have the same classes);
    evaluation-only runs from DATASETS.TEST. A NUM_CLASSES given on the command line that
    disagrees is an error; one from the YAML is replaced (with a log line): fine-tuning a
    config written for another dataset is the point.
    """
    eval_only = bool(getattr(args, "eval_only", False))
    roles = [("DATASETS.TEST", cfg.DATASETS.TEST)] if eval_only else [
        ("DATASETS.TRAIN", cfg.DATASETS.TRAIN), ("DATASETS.TEST", cfg.DATASETS.TEST)]
    found = []  # (role, dataset, classes)
    for role, names in roles:
        for name in names:
            classes = _dataset_classes(name, role)
            if classes is not None:
                found.append((role, name, list(classes)))
    if not found:
        return
    role0, name0, classes0 = found[0]
    for role, name, classes in found[1:]:
        if classes != classes0:
            raise ValueError(
                f"datasets disagree on their classes: {name0!r} ({role0}) has {len(classes0)} "
                f"{classes0}, {name!r} ({role}) has {len(classes)} {classes}. Train and evaluate on "
                "datasets with the same categories."
            )
    explicit = _command_line_keys(args)
    for key in NUM_CLASSES_KEYS:
        section, sub, leaf = key.split(".")
        current = cfg[section][sub][leaf]
        if current == len(classes0):
            continue
        if key in explicit:
            raise ValueError(
                f"{key} {current} on the command line disagrees with dataset {name0!r}, which has "
                f"{len(classes0)} classes {classes0}; drop the override (it is taken from the dataset)."
            )
        cfg[section][sub][leaf] = len(classes0)
        if (key == "MODEL.RETINANET.NUM_CLASSES") == ("RetinaNet" in cfg.MODEL.META_ARCHITECTURE):
            logger.info(f"{key}: {current} -> {len(classes0)}, the classes of dataset {name0!r}: {classes0}")


def _check_mask_format(cfg: CfgNode, args) -> None:
    """RLE masks (the embedded shapes datasets, or a user json with RLE) need the bitmask format."""
    if not cfg.MODEL.MASK_ON or cfg.INPUT.MASK_FORMAT != "polygon" or getattr(args, "eval_only", False):
        return
    for name in cfg.DATASETS.TRAIN:
        fmt = MetadataCatalog.get(name).get("segmentation_format")
        if fmt in ("rle", "mixed"):
            raise ValueError(
                f"dataset {name!r} in DATASETS.TRAIN has {fmt} masks, but INPUT.MASK_FORMAT is "
                "'polygon', which reads only polygons. Set INPUT.MASK_FORMAT bitmask (it reads both)."
            )


def finalize_config(cfg: CfgNode, args) -> CfgNode:
    """Derive and check what the config cannot know by itself; runs before the config is frozen.

    Today: NUM_CLASSES from the datasets' json (fine-tuning), and that the training masks can be
    read in INPUT.MASK_FORMAT. Further config/dataset checks plug in here.
    """
    _set_num_classes_from_datasets(cfg, args)
    _check_mask_format(cfg, args)
    return cfg


def setup(args) -> CfgNode:
    """Build, finalize and freeze the config of a run, and set up logging and the output dir.

    Called once per process (also in each process that ``launch`` starts), before the model is
    built. Generated datasets named in the config are created here, once per machine.
    """
    cfg = build_config(args)
    # gn_det's own log lines (class counts, datasets) go to the same stdout/log.txt as Detectron2's.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="gn_det")
    register_datasets_from_args(args)
    # Datasets that validation cleaned under --skip-invalid read their cleaned json (every process).
    use_cleaned_datasets(getattr(args, "cleaned_datasets", None) or {})
    finalize_config(cfg, args)
    cfg.freeze()
    default_setup(cfg, args)
    if comm.get_local_rank() == 0:
        for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
            prepare_dataset(name)
    comm.synchronize()
    return cfg
