"""Check a run's inputs before spending GPU time on it: the config (unknown keys, GN groups vs
channels, registered names, batch vs processes, dataset names), the datasets it uses (COCO,
VIA or labelme: every record and image header, errors and warnings as docs/validation.md's
policy says; --strict makes warnings errors) and the checkpoint it would load. Reports every
problem.
Takes gn-det-train's (tools/train_net.py's) arguments, so the same command line can be checked first:

    gn-det-validate --config-file CFG [--num-gpus 8] [--resume] [--dataset N J D] [KEY VALUE ...]
    gn-det-validate --coco-json annotations.json images/ --checkpoint model_final.pth

A LazyConfig (``.py``) is checked as far as it can be without running it: it loads with the
overrides (``key=value``), defines what Detectron2's lazy trainer reads, and its model builds.

Exit status: 0 when the run can start, 1 when problems were found.
"""

from detectron2.utils.logger import setup_logger

from ..data import prepare_dataset, register_dataset
from ..engine import argument_parser
from ..engine.lazy_train import LAZY_TRAINER_KEYS, is_lazy_config, lazy_config_problems
from ..validation.cli import check_files, validate_args

__all__ = ["parse_args", "main"]


def parse_args(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--coco-json",
        nargs=2,
        action="append",
        default=[],
        metavar=("JSON", "IMAGE_DIR"),
        help="also check this dataset and its images (repeatable): a COCO json, a VIA json or a "
        "folder of labelme files",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="PATH",
        help="also check this checkpoint file (repeatable)",
    )
    args = parser.parse_args(argv)
    if not (args.config_file or args.opts or args.coco_json or args.checkpoint):
        parser.error(
            "nothing to check: give --config-file (and/or KEY VALUE overrides), --coco-json or --checkpoint"
        )
    return args


def main(argv=None) -> int:
    """``gn-det-validate``: exit status 0 when the run can start, 1 when problems were found."""
    args = parse_args(argv)
    setup_logger(name="gn_det")
    ok = True
    if is_lazy_config(args.config_file):
        problems = lazy_config_problems(args.config_file, args.opts)
        print("\n".join(problems) or f"{args.config_file}: loads, has {', '.join(LAZY_TRAINER_KEYS)}, "
              "and its model builds (datasets and checkpoints of .py configs are not checked)")
        ok = not problems
    elif args.config_file or args.opts:
        report = validate_args(
            args, register_dataset=register_dataset, prepare_dataset=prepare_dataset
        )
        ok = report.ok
    if args.coco_json or args.checkpoint:
        report = check_files(
            args.coco_json,
            args.checkpoint,
            skip_invalid=args.skip_invalid,
            strict=args.strict,
            check_images=not args.no_image_check,
            trust=args.trust_checkpoint or None,
        )
        print(report.format(max_per_kind=20))
        ok = ok and report.ok
    return 0 if ok else 1

