#!/usr/bin/env python3
"""COCO box and mask AP of a checkpoint on a dataset; writes ap_report.json and ap_report.md.

    python3 tools/evaluate.py --weights output/main/model_final.pth --dataset-name gn_det_shapes_val
    python3 tools/evaluate.py --weights W.pth --config-file CFG --coco-json val.json --image-root imgs/

Same as ``tools/train_net.py --eval-only``, with the dataset given directly. A custom dataset
the checkpoint's run registered with ``--dataset`` is found again by name (its
``dataset_metadata.json``).
"""
import gn_det  # noqa: F401  registers gn_det's models and datasets

from gn_det.engine import (
    evaluate_args_to_train_args,
    evaluate_argument_parser,
    train_net_main,
    validate_and_launch,
)


if __name__ == "__main__":
    parser = evaluate_argument_parser()
    cli = parser.parse_args()
    try:
        args = evaluate_args_to_train_args(cli)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    validate_and_launch(train_net_main, args)
