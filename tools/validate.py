#!/usr/bin/env python3
"""Check a run's inputs before spending GPU time on it: the config (unknown keys, GN groups vs
channels, registered names, batch vs processes, dataset names), the datasets it uses (COCO,
VIA or labelme: every record and image header, errors and warnings as docs/validation.md's
policy says; --strict makes warnings errors) and the checkpoint it would load. Reports every
problem.
Takes tools/train_net.py's arguments, so the same command line can be checked first:

    python3 tools/validate.py --config-file CFG [--num-gpus 8] [--resume] [--dataset N J D] [KEY VALUE ...]
    python3 tools/validate.py --coco-json annotations.json images/ --checkpoint model_final.pth

Exit status: 0 when the run can start, 1 when problems were found.
"""

import sys

from detectron2.utils.logger import setup_logger

import gn_det  # noqa: F401  registers gn_det's models and datasets
from gn_det.data import prepare_dataset, register_dataset
from gn_det.engine import argument_parser
from gn_det.validation.cli import check_files, validate_args


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
    args = parse_args(argv)
    setup_logger(name="gn_det")
    ok = True
    if args.config_file or args.opts:
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


if __name__ == "__main__":
    sys.exit(main())
