"""The bodies of gn_det's tools: train (or resume, or fine-tune), evaluate a checkpoint.

``tools/train_net.py`` and ``tools/evaluate.py`` parse arguments and call these through
Detectron2's ``launch`` (one process per GPU, or ``--num-gpus`` CPU processes with Gloo).
"""
import argparse
import logging
import os
from detectron2.data import MetadataCatalog

from .checkpoint import FineTuneCheckpointer
from ..validation import add_validation_arguments
from .setup import add_dataset_arguments, setup
from .trainer import Trainer

__all__ = [
    "train_net_main",
    "load_for_inference",
    "evaluate_checkpoint",
    "evaluate_argument_parser",
    "evaluate_args_to_train_args",
    "config_file_for_weights",
]

logger = logging.getLogger(__name__)


def train_net_main(args, trainer_cls=Trainer):
    """``tools/train_net.py``'s main: set up, then train (``--resume``: continue) or evaluate
    (``--eval-only``). Returns the evaluation results (main process) or the trainer's."""
    cfg = setup(args)
    if args.eval_only:
        return evaluate_checkpoint(cfg, resume=args.resume, trainer_cls=trainer_cls)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def load_for_inference(checkpointer: FineTuneCheckpointer, weights: str, dataset_hint: str = "") -> dict:
    """Load ``weights`` for evaluation/prediction: unlike fine-tuning, every class-specific
    weight must fit, or the predictions would come from untrained layers."""
    extra = checkpointer.load(weights, checkpointables=[])
    if checkpointer.reinitialized:
        key, before, after = checkpointer.reinitialized[0]
        raise ValueError(
            f"checkpoint {weights!r} was trained for another number of classes than the model "
            f"({key}: {before} in the checkpoint, {after} in the model){dataset_hint}. Evaluate it "
            "on a dataset with the classes it was trained on, or fine-tune it first."
        )
    return extra


def evaluate_checkpoint(cfg, resume: bool = False, trainer_cls=Trainer):
    """Load ``MODEL.WEIGHTS`` (``resume``: the last checkpoint in OUTPUT_DIR), run inference and
    COCO evaluation on ``DATASETS.TEST``, write ``ap_report.json``. Returns Detectron2's results."""
    model = trainer_cls.build_model(cfg)
    checkpointer = trainer_cls.build_checkpointer(cfg, model)
    weights = checkpointer.get_checkpoint_file() if resume and checkpointer.has_checkpoint() else cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "evaluation needs a checkpoint: set MODEL.WEIGHTS (e.g. output/model_final.pth), or "
            f"--resume with a last_checkpoint in OUTPUT_DIR ({cfg.OUTPUT_DIR!r} has none)"
        )
    classes = [MetadataCatalog.get(n).get("thing_classes") for n in cfg.DATASETS.TEST]
    hint = f" (DATASETS.TEST {list(cfg.DATASETS.TEST)} has classes {classes[0]})" if classes and classes[0] else ""
    extra = load_for_inference(checkpointer, weights, hint)
    return trainer_cls.test(cfg, model, weights=weights, iteration=extra.get("iteration"))


def config_file_for_weights(weights: str) -> str:
    """The config.yaml that Detectron2's default_setup saved next to a checkpoint."""
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no --config-file given and no config.yaml next to {weights!r} ({path}); pass the "
            "config the checkpoint was trained with"
        )
    return path


def evaluate_argument_parser() -> argparse.ArgumentParser:
    """``tools/evaluate.py``: a checkpoint and a dataset (registered name, or COCO json + images)."""
    parser = argparse.ArgumentParser(
        description="COCO box/mask AP of a checkpoint on a dataset; writes ap_report.json/.md.",
        epilog="Example: python3 tools/evaluate.py --weights output/main/model_final.pth "
        "--dataset-name gn_det_shapes_val",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--weights", required=True, metavar="PTH", help="checkpoint to evaluate")
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="config of the checkpoint (default: config.yaml next to --weights)")
    parser.add_argument("--dataset-name", default="", metavar="NAME",
                        help="registered dataset to evaluate on (or the name for --coco-json)")
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
    datasets = list(args.dataset or [])
    if args.coco_json or args.image_root:
        if not (args.coco_json and args.image_root):
            raise ValueError("--coco-json and --image-root go together (the json and its image directory)")
        name = args.dataset_name or os.path.splitext(os.path.basename(args.coco_json))[0]
        datasets.append([name, args.coco_json, args.image_root])
    elif args.dataset_name:
        name = args.dataset_name
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
        trust_checkpoint=args.trust_checkpoint,
        no_image_check=args.no_image_check,
    )

