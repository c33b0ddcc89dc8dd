"""COCO box and mask AP of a checkpoint on a dataset; writes ap_report.json and ap_report.md.

    gn-det-evaluate --weights output/main/model_final.pth --dataset-name gn_det_shapes_val
    gn-det-evaluate --weights W.pth --config-file CFG --coco-json val.json --image-root imgs/

Same as ``tools/train_net.py --eval-only``, with the dataset given directly. A custom dataset
the checkpoint's run registered with ``--dataset`` is found again by name (its
``dataset_metadata.json``).
"""
from ..engine import (
    evaluate_args_to_train_args,
    evaluate_argument_parser,
    train_net_main,
    validate_and_launch,
)

__all__ = ["main"]


def main(argv=None):
    """``gn-det-evaluate``: parse, translate into train_net's ``--eval-only``, validate, launch."""
    parser = evaluate_argument_parser()
    cli = parser.parse_args(argv)
    try:
        args = evaluate_args_to_train_args(cli)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    return validate_and_launch(train_net_main, args)
