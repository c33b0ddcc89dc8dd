"""``tools/sweep.py``: arguments, then plan -> run -> sweep.json / sweep.md / sweep.png."""

import argparse
import logging
import os
import shlex
import sys
from typing import Dict, List, Optional

from detectron2.config import get_cfg

from .. import model_zoo
from ..config import add_gn_config
from ..engine.setup import add_dataset_arguments
from .norm_presets import PRESET_NAMES, parse_norm_presets
from .plan import plan_sweep
from .results import write_sweep_outputs
from .runner import run_sweep

__all__ = ["DEFAULT_CONFIG", "sweep_argument_parser", "parse_preset_opts", "build_base_config", "sweep_main"]

logger = logging.getLogger(__name__)

# The small from-scratch R18-FPN on the embedded shapes dataset: runs on a CPU. Installed with
# gn_det (gn_det.model_zoo), so the default works from any directory.
DEFAULT_CONFIG = model_zoo.get_config_file("Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml")

EPILOG = """examples:
  # the paper's comparison on the embedded shapes dataset (CPU): 3 norms x 3 batches
  python3 tools/sweep.py --norms BN 'BN*' GN --images-per-gpu 1 2 4 --output-dir output/sweep
  # rerun the same command to resume: finished cells are skipped, interrupted ones resume
  # only re-render sweep.json / sweep.md / sweep.png from the finished cells
  python3 tools/sweep.py --output-dir output/sweep --plot-only
  # 8 GPUs per cell, SyncBN included, 3 seeds, on your own COCO-format data
  #   (BN presets start from MSRA's BN ResNet-50, which puts the stride in the 1x1 conv)
  python3 tools/sweep.py --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_gn.yaml \\
      --norms GN GN+WS SyncBN BN --num-gpus 8 --seeds 0 1 2 \\
      --weights SyncBN=detectron2://ImageNetPretrained/MSRA/R-50.pkl \\
      --preset-opts SyncBN MODEL.RESNETS.STRIDE_IN_1X1 True \\
      --weights BN=detectron2://ImageNetPretrained/MSRA/R-50.pkl \\
      --preset-opts BN MODEL.RESNETS.STRIDE_IN_1X1 True \\
      --dataset my_train train.json images/ --dataset my_val val.json images/ \\
      --train-dataset my_train --test-dataset my_val
"""


def sweep_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train one detector per norm x images/GPU x seed, each with the same number of "
        "training images (LR and schedule scaled by gn_det.batch_scaling), and plot box/mask AP "
        "against images per GPU.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config-file",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        type=model_zoo.config_file_argument,
        help="base config, a local YAML or the name of one of gn_det's installed configs; its "
        "schedule (MAX_ITER x IMS_PER_BATCH images) is what every cell trains on (default: the "
        "embedded shapes R18-FPN config)",
    )
    parser.add_argument(
        "--norms",
        nargs="+",
        default=["BN", "BN*", "GN"],
        metavar="NORM",
        help=f"norm presets: {', '.join(PRESET_NAMES)} (FrozenBN = BN*; default: BN BN* GN)",
    )
    parser.add_argument(
        "--images-per-gpu",
        nargs="+",
        type=int,
        default=[1, 2, 4, 8],
        metavar="N",
        help="per-GPU batches (default: 1 2 4 8)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0],
        metavar="S",
        help="seeds per cell; the plot shows their spread (default: 0)",
    )
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per cell (Detectron2's launch; CPU processes use Gloo); " "SyncBN needs >= 2",
    )
    parser.add_argument(
        "--output-dir",
        default="output/sweep",
        metavar="DIR",
        help="sweep directory: runs/<norm>_<N>img_seed<S>/, sweep.json, sweep.md, sweep.png",
    )
    add_dataset_arguments(parser, help="register a COCO-format dataset under NAME in every cell (repeatable)")
    parser.add_argument(
        "--train-dataset",
        default="",
        metavar="NAME",
        help="DATASETS.TRAIN of every cell (default: the base config's)",
    )
    parser.add_argument(
        "--test-dataset",
        default="",
        metavar="NAME",
        help="DATASETS.TEST of every cell (default: the base config's)",
    )
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NORM=WEIGHTS",
        help="MODEL.WEIGHTS for one preset, e.g. BN*=detectron2://ImageNetPretrained/MSRA/R-50.pkl "
        "(a BN backbone cannot start from GN weights, nor the reverse)",
    )
    parser.add_argument(
        "--preset-opts",
        nargs=3,
        action="append",
        default=[],
        metavar=("NORM", "KEY", "VALUE"),
        help="a config override for one preset only (repeatable), applied after its norm keys "
        "and before the batch rule, e.g. --preset-opts BN MODEL.RESNETS.STRIDE_IN_1X1 True",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="train cells in this process instead of one subprocess per cell",
    )
    parser.add_argument(
        "--plot-only",
        action="store_true",
        help="only re-render sweep.json / sweep.md / sweep.png from the cells in --output-dir",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="overrides of the base config (KEY VALUE pairs), applied before each cell's derivation",
    )
    return parser


def parse_preset_opts(weights: List[str], preset_opts: List[List[str]]) -> Dict[str, List[str]]:
    """``--weights NORM=W`` and ``--preset-opts NORM KEY VALUE`` -> ``{NORM: [KEY, VALUE, ...]}``
    (preset names as given; ``plan_sweep`` resolves aliases)."""
    by_norm: Dict[str, List[str]] = {}
    for item in weights:
        norm, sep, path = item.partition("=")
        if not sep or not norm.strip():
            raise ValueError(
                f"--weights {item!r}: expected NORM=WEIGHTS, e.g. BN=detectron2://ImageNetPretrained/MSRA/R-50.pkl"
            )
        by_norm.setdefault(norm.strip(), []).extend(["MODEL.WEIGHTS", path.strip()])
    for norm, key, value in preset_opts:
        by_norm.setdefault(norm, []).extend([key, value])
    return by_norm


def _check_datasets(cfg, registrations) -> None:
    from detectron2.data import DatasetCatalog

    for name, json_file, image_root in registrations:
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"--dataset {name}: annotation file {json_file!r} does not exist")
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"--dataset {name}: image directory {image_root!r} does not exist")
    known = set(DatasetCatalog.list()) | {r[0] for r in registrations}
    for key, names in (("DATASETS.TRAIN", cfg.DATASETS.TRAIN), ("DATASETS.TEST", cfg.DATASETS.TEST)):
        if not names:
            raise ValueError(f"{key} is empty: a sweep trains and evaluates every cell; name a dataset.")
        for name in names:
            if name not in known:
                raise KeyError(
                    f"{key} names dataset {name!r}, which is not registered. Register a COCO-format "
                    f"dataset with --dataset {name} JSON IMAGE_DIR, or use one of the registered ones "
                    "(e.g. gn_det_shapes_train / gn_det_shapes_val)."
                )


def build_base_config(args):
    """The merged base config: gn_det's keys, ``--config-file``, datasets, trailing overrides."""
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(model_zoo.resolve_config_file(args.config_file))
    if args.train_dataset:
        cfg.DATASETS.TRAIN = (args.train_dataset,)
    if args.test_dataset:
        cfg.DATASETS.TEST = (args.test_dataset,)
    cfg.merge_from_list(list(args.opts or []))
    _check_datasets(cfg, args.dataset)
    return cfg


def _sweep_info(args, presets, argv: List[str]) -> dict:
    return {
        "base_config": os.path.relpath(os.path.abspath(args.config_file)),
        "norms": [p.name for p in presets],
        "images_per_gpu": list(args.images_per_gpu),
        "seeds": list(args.seeds),
        "num_gpus": args.num_gpus,
        "overrides": list(args.opts or []),
        "command": " ".join(["tools/sweep.py"] + [shlex.quote(a) for a in argv]),
    }


def sweep_main(argv: Optional[List[str]] = None) -> int:
    """Run ``tools/sweep.py``; returns the exit code (1 when a cell failed)."""
    import gn_det  # noqa: F401  registers models and embedded datasets

    from detectron2.utils.logger import setup_logger

    argv = list(sys.argv[1:] if argv is None else argv)
    args = sweep_argument_parser().parse_args(argv)
    sweep_dir = os.path.abspath(args.output_dir)
    os.makedirs(sweep_dir, exist_ok=True)
    setup_logger(os.path.join(sweep_dir, "sweep_log.txt"), name="gn_det.sweep", abbrev_name="sweep")
    if args.plot_only:
        import json

        from .results import collect_runs

        if not collect_runs(sweep_dir):
            raise FileNotFoundError(
                f"--plot-only: no sweep cells in {sweep_dir} (no runs/*/sweep_run.json); give the "
                "--output-dir of a sweep that has run."
            )
        info_path = os.path.join(sweep_dir, "sweep.json")
        info = {}
        if os.path.isfile(info_path):
            with open(info_path) as f:
                info = json.load(f).get("sweep", {})
        paths = write_sweep_outputs(sweep_dir, info)
        logger.info(f"Re-rendered from the cells in {sweep_dir}: {', '.join(paths.values())}")
        return 0

    presets = parse_norm_presets(args.norms)
    base = build_base_config(args)
    runs = plan_sweep(
        base,
        presets,
        args.images_per_gpu,
        args.seeds,
        sweep_dir,
        num_gpus=args.num_gpus,
        preset_opts=parse_preset_opts(args.weights, args.preset_opts),
        where=args.config_file,
    )
    info = _sweep_info(args, presets, argv)
    names = [r.cell.name for r in runs]
    logger.info(
        f"Sweep of {len(runs)} cells into {sweep_dir}: norms {info['norms']}, images/GPU "
        f"{info['images_per_gpu']}, seeds {info['seeds']}, {runs[0].images_seen} training images per cell"
    )

    def refresh(_run=None):
        write_sweep_outputs(sweep_dir, info, names)

    outcome = run_sweep(runs, args.num_gpus, args.dataset, args.in_process, after_each=refresh)
    paths = write_sweep_outputs(sweep_dir, info, names)
    logger.info(
        f"{len(outcome['finished'])} cells finished earlier, {len(outcome['ran'])} trained now, "
        f"{len(outcome['failed'])} failed{(': ' + ', '.join(outcome['failed'])) if outcome['failed'] else ''}. "
        f"Outputs: {', '.join(paths.values())}"
    )
    return 1 if outcome["failed"] else 0
