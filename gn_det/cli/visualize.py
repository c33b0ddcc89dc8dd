"""Draw a model's predictions (boxes, masks, class names, scores) on images, to PNG files.

    gn-det-visualize --weights output/main/model_final.pth --dataset-name gn_det_shapes_val \\
        --num-images 4 --output output/main/vis
    gn-det-visualize --weights W.pth --config-file CFG --input a.jpg b.jpg --output vis/

For a dataset, each PNG shows the predictions (left) beside the ground truth (right). Class
names come from the checkpoint's run, so plain images of a custom dataset get them too.
"""
import argparse

from detectron2.utils.logger import setup_logger

from ..engine import (
    add_dataset_arguments,
    build_config,
    config_file_for_weights,
    register_datasets_from_args,
    visualize_predictions,
)
from ..engine.setup import datasets_of_run
from ..model_zoo import config_file_argument

__all__ = ["main"]


def main(argv=None):
    """``gn-det-visualize``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, metavar="PTH")
    parser.add_argument("--config-file", default="", metavar="FILE", type=config_file_argument,
                        help="config of the checkpoint (default: config.yaml next to --weights); "
                        "a local YAML or the name of one of gn_det's installed configs")
    parser.add_argument("--input", nargs="*", default=[], metavar="IMAGE", help="image files")
    parser.add_argument("--dataset-name", default="", help="registered dataset to take images from")
    parser.add_argument("--num-images", type=int, default=8, help="images taken from --dataset-name")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="smallest score drawn")
    parser.add_argument("--output", required=True, metavar="DIR", help="directory for the PNGs")
    add_dataset_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=None, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)
    setup_logger(name="gn_det")
    try:
        args.config_file = args.config_file or config_file_for_weights(args.weights)
        if args.dataset_name and args.dataset_name not in {d[0] for d in args.dataset}:
            args.dataset += datasets_of_run(args.weights, [args.dataset_name])
        register_datasets_from_args(args)
        args.opts = list(args.opts or []) + [
            "MODEL.WEIGHTS", args.weights, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", str(args.score_threshold),
        ]
        cfg = build_config(args)
        paths = visualize_predictions(
            cfg, args.output, image_paths=args.input, dataset_name=args.dataset_name, num_images=args.num_images
        )
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    print("\n".join(paths))
