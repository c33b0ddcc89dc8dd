"""Training, evaluation and fine-tuning on Detectron2's engine.

``train_net.py`` holds the flow of tools/train_net.py (``Trainer``, ``train_net_main``) and
``lazy_train.py`` its LazyConfig (``.py``) counterpart,
``setup.py`` the command lines and the config set-up, ``hooks.py`` the training hooks,
``visualize.py`` prediction and drawing.
"""
from .lazy_train import is_lazy_config, lazy_train_main
from .setup import (
    accept_packaged_configs,
    add_dataset_arguments,
    argument_parser,
    build_config,
    config_file_for_weights,
    evaluate_args_to_train_args,
    evaluate_argument_parser,
    finalize_config,
    launch_from_args,
    register_datasets_from_args,
    setup,
    validate_and_launch,
)
from .train_net import Trainer, train_net_main
from .visualize import CheckedPredictor, visualize_predictions

__all__ = [
    "accept_packaged_configs",
    "is_lazy_config",
    "lazy_train_main",
    "add_dataset_arguments",
    "argument_parser",
    "build_config",
    "config_file_for_weights",
    "evaluate_args_to_train_args",
    "evaluate_argument_parser",
    "finalize_config",
    "launch_from_args",
    "register_datasets_from_args",
    "setup",
    "validate_and_launch",
    "Trainer",
    "train_net_main",
    "CheckedPredictor",
    "visualize_predictions",
]
