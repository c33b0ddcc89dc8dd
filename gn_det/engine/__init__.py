"""Training, evaluation and fine-tuning on Detectron2's engine.

``setup(args)`` builds and finalizes a run's config; ``Trainer`` is Detectron2's DefaultTrainer
with COCO AP reports and a fine-tuning checkpointer; ``train_net_main`` is tools/train_net.py.
"""
from .checkpoint import CheckpointMismatchError, FineTuneCheckpointer, is_class_specific
from .runs import (
    config_file_for_weights,
    evaluate_args_to_train_args,
    evaluate_argument_parser,
    evaluate_checkpoint,
    load_for_inference,
    train_net_main,
)
from .setup import (
    argument_parser,
    build_config,
    finalize_config,
    launch_from_args,
    register_datasets_from_args,
    setup,
    validate_and_launch,
)
from .trainer import Trainer
from .visualize import CheckedPredictor, visualize_predictions

__all__ = [
    "CheckpointMismatchError",
    "FineTuneCheckpointer",
    "is_class_specific",
    "config_file_for_weights",
    "evaluate_args_to_train_args",
    "evaluate_argument_parser",
    "evaluate_checkpoint",
    "load_for_inference",
    "train_net_main",
    "argument_parser",
    "build_config",
    "finalize_config",
    "launch_from_args",
    "register_datasets_from_args",
    "setup",
    "validate_and_launch",
    "Trainer",
    "CheckedPredictor",
    "visualize_predictions",
]
