"""Command lines and config set-up of gn_det's tools (Detectron2's conventions).

``setup(args)`` is the one place where a run's config is built and finalized, before any model
exists: get_cfg + add_gn_config, datasets registered from ``--dataset``, the YAML and trailing
overrides merged, ``finalize_config`` (class count from the datasets, consistency checks),
freeze, then Detectron2's ``default_setup`` (logging, config.yaml, seeds) and, for training,
``dataset_metadata.json`` (the run's classes) beside config.yaml. Checks that must run before a
model is built belong in ``finalize_config``.

The parsers: ``argument_parser`` (tools/train_net.py: Detectron2's flags plus ``--dataset``) and
``evaluate_argument_parser`` (tools/evaluate.py), whose arguments ``evaluate_args_to_train_args``
turns into train_net's ``--eval-only``.
"""
import argparse
import logging
import os
from typing import List, Optional

from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint.dataset_metadata import dataset_metadata_from_config, find_dataset_metadata, write_dataset_metadata
from ..config import add_gn_config
from ..data import prepare_dataset, register_dataset
from ..data.coco_register import take_parsed_jsons, use_handoff
from ..data.handoff import handed_over
from ..data.formats import DEFAULT_LABEL
from ..model_zoo import config_file_argument, resolve_config_file
from ..validation import add_validation_arguments, use_cleaned_datasets, validate_args_or_exit
from ..validation.validate import cleaned_datasets_dir
from ..third_party_warnings import ignore_third_party_warnings

__all__ = [
    "accept_packaged_configs",
    "argument_parser",
    "add_dataset_arguments",
    "evaluate_argument_parser",
    "evaluate_args_to_train_args",
    "config_file_for_weights",
    "datasets_of_run",
    "launch_from_args",
    "validate_and_launch",
    "register_datasets_from_args",
    "build_config",
    "finalize_config",
    "setup",
]

logger = logging.getLogger(__name__)

# Config keys that hold the number of classes, per meta-architecture family.
_NUM_CLASSES_KEYS = ("MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES")


def add_dataset_arguments(
    parser: argparse.ArgumentParser,
    help: str = "register a dataset under NAME (repeatable): FILE is a COCO json, a VIA project "
    "or region json, or a folder of labelme json files (detected); then use NAME in "
    "DATASETS.TRAIN / DATASETS.TEST. MODEL.ROI_HEADS.NUM_CLASSES is taken from its classes.",
) -> argparse.ArgumentParser:
    """``--dataset NAME FILE IMAGE_DIR`` (repeatable), read by ``register_datasets_from_args``."""
    parser.add_argument(
        "--dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "FILE", "IMAGE_DIR"),
        help=help,
    )
    parser.add_argument(
        "--unlabeled-class",
        default=DEFAULT_LABEL,
        metavar="CLASS",
        help="the class of VIA / labelme data in which no region has a label (default: "
        f"{DEFAULT_LABEL!r}); where other regions have labels, unlabelled ones are left out",
    )
    return parser


def accept_packaged_configs(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``--config-file`` take, besides a local file, the name of a config installed with
    gn_det (``gn_det.model_zoo``: ``Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml``, or the
    repository's ``configs/...`` path), so the commands work from any directory."""
    action = parser._option_string_actions["--config-file"]
    action.type = config_file_argument
    action.help = (action.help or "path to config file") + (
        "; a name of gn_det's installed configs (gn_det.model_zoo.list_configs()) works from any directory"
    )
    return parser


def argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """Detectron2's ``default_argument_parser`` plus ``--dataset NAME FILE IMAGE_DIR``; its
    ``--config-file`` also takes gn_det's installed configs by name (``.yaml`` or ``.py``)."""
    parser = add_validation_arguments(add_dataset_arguments(default_argument_parser(epilog)))
    return accept_packaged_configs(parser)


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
    report = validate_args_or_exit(args, register_dataset=register_dataset, prepare_dataset=prepare_dataset)
    if args.num_gpus * args.num_machines == 1:
        return launch_from_args(main_fn, args)  # main runs here, with the jsons validation parsed
    # Each training process loads the jsons as validated here, from files (gn_det.data.handoff).
    output_dir = cleaned_datasets_dir(report.cfg) if report.cfg is not None else "."
    with handed_over(take_parsed_jsons(), output_dir, readers=args.num_gpus) as entries:
        args.handed_over_datasets = entries
        return launch_from_args(main_fn, args)


def register_datasets_from_args(args) -> None:
    """Register ``args.dataset``; entries validation checked come with ``args.dataset_metadata``
    and are registered without reading their json again."""
    metadata = getattr(args, "dataset_metadata", None) or {}
    unlabeled_class = getattr(args, "unlabeled_class", None) or DEFAULT_LABEL
    for name, json_file, image_root in getattr(args, "dataset", None) or []:
        register_dataset(name, json_file, image_root, metadata=metadata.get(name), unlabeled_class=unlabeled_class)


def config_file_for_weights(weights: str) -> str:
    """The config.yaml that Detectron2's default_setup saved next to a checkpoint."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no --config-file given and no config.yaml next to {weights!r} ({path}); pass the "
            "config the checkpoint was trained with"
        )
    return path


def datasets_of_run(weights: str, names) -> List[List[str]]:
    """``--dataset`` entries (name, json, image dir) for those of ``names`` that are not
    registered in this process but that the run of ``weights`` recorded in its dataset metadata
    (a custom dataset registered with ``--dataset`` when it trained)."""
    missing = [n for n in names if n and n not in DatasetCatalog]
    if not missing:
        return []
    recorded = (find_dataset_metadata(weights) or {}).get("datasets", {})
    entries = []
    for name in missing:
        entry = recorded.get(name, {})
        if entry.get("json_file") and entry.get("image_root"):
            entries.append([name, entry["json_file"], entry["image_root"]])
    return entries


def evaluate_argument_parser() -> argparse.ArgumentParser:
    """``tools/evaluate.py``: a checkpoint and a dataset (registered name, or COCO json + images)."""
    parser = argparse.ArgumentParser(
        description="COCO box/mask AP of a checkpoint on a dataset; writes ap_report.json/.md.",
        epilog="Example: python3 tools/evaluate.py --weights output/main/model_final.pth "
        "--dataset-name gn_det_shapes_val",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--weights", required=True, metavar="PTH", help="checkpoint to evaluate")
    parser.add_argument("--config-file", default="", metavar="FILE", type=config_file_argument,
                        help="config of the checkpoint (default: config.yaml next to --weights); "
                        "a local YAML or the name of one of gn_det's installed configs")
    parser.add_argument("--dataset-name", default="",  metavar="NAME",
                        help="dataset to evaluate on: registered, or one the checkpoint's run was "
                        "trained/tested on (its dataset_metadata.json); or the name for --coco-json")
    parser.add_argument("--coco-json", default="", metavar="JSON", help="COCO instances json to evaluate on")
    parser.add_argument("--image-root", default="", metavar="DIR", help="image directory of --coco-json")
    parser.add_argument("--output", default="", metavar="DIR",
                        help="where ap_report.json goes (default: <weights dir>/evaluation/<dataset>)")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (GPUs, or CPU with Gloo)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto")
    add_dataset_arguments(parser)
    add_validation_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=None,
                        help="config overrides: KEY VALUE pairs, as for train_net.py")
    return parser


def evaluate_args_to_train_args(args) -> argparse.Namespace:
    """Translate ``tools/evaluate.py``'s arguments into ``train_net_main``'s (``--eval-only``)."""
    if (args.config_file or "").endswith(".py"):
        raise ValueError(
            f"--config-file {args.config_file} is a LazyConfig (.py); evaluate it with gn-det-train "
            "--config-file CFG.py --eval-only train.init_checkpoint=WEIGHTS (tools/train_net.py)"
        )
    datasets = list(args.dataset or [])
    if args.coco_json or args.image_root:
        if not (args.coco_json and args.image_root):
            raise ValueError("--coco-json and --image-root go together (the json and its image directory)")
        name = args.dataset_name or os.path.splitext(os.path.basename(args.coco_json))[0]
        datasets.append([name, args.coco_json, args.image_root])
    elif args.dataset_name:
        name = args.dataset_name
        if name not in {d[0] for d in datasets}:
            datasets += datasets_of_run(args.weights, [name])
    else:
        raise ValueError("name a dataset: --dataset-name NAME (registered), or --coco-json JSON --image-root DIR")
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.weights)), "evaluation", name)
    opts = list(args.opts or []) + [
        "MODEL.WEIGHTS", args.weights, "DATASETS.TEST", repr((name,)), "OUTPUT_DIR", output,
    ]
    return argparse.Namespace(
        config_file=args.config_file or config_file_for_weights(args.weights),
        opts=opts,
        dataset=datasets,
        eval_only=True,
        resume=False,
        num_gpus=args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        skip_invalid=args.skip_invalid,
        strict=args.strict,
        unlabeled_class=args.unlabeled_class,
        trust_checkpoint=args.trust_checkpoint,
        no_image_check=args.no_image_check,
    )


def build_config(args) -> CfgNode:
    """get_cfg + gn_det's keys, the ``--config-file`` YAML (a local file or one of gn_det's
    installed configs), then the trailing overrides."""
    cfg = get_cfg()
    add_gn_config(cfg)
    if args.config_file:
        config_file = resolve_config_file(args.config_file)
        if config_file.endswith(".py"):
            raise ValueError(
                f"--config-file {args.config_file} is a LazyConfig (.py); this command reads YAML "
                "configs. gn-det-train (tools/train_net.py) trains and evaluates .py configs."
            )
        cfg.merge_from_file(config_file)
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
    for key in _NUM_CLASSES_KEYS:
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
    built. Generated datasets named in the config are created here, once per machine. A training
    run writes its classes to ``OUTPUT_DIR/dataset_metadata.json`` (main process).
    """
    ignore_third_party_warnings()  # the known-harmless ones only (gn_det/third_party_warnings.py)
    cfg = build_config(args)
    # gn_det's own log lines (class counts, datasets) go to the same stdout/log.txt as Detectron2's.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="gn_det")
    register_datasets_from_args(args)
    use_handoff(getattr(args, "handed_over_datasets", None) or {})  # the jsons the launcher validated
    # Datasets that validation cleaned under --skip-invalid read their cleaned json (every process).
    use_cleaned_datasets(getattr(args, "cleaned_datasets", None) or {})
    finalize_config(cfg, args)
    cfg.freeze()
    default_setup(cfg, args)
    if comm.is_main_process() and not getattr(args, "eval_only", False) and cfg.OUTPUT_DIR:
        metadata = dataset_metadata_from_config(cfg)
        if metadata is not None:  # next to config.yaml: the classes travel with the run
            write_dataset_metadata(cfg.OUTPUT_DIR, metadata)
    if comm.get_local_rank() == 0:
        for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
            prepare_dataset(name)
    comm.synchronize()
    return cfg
