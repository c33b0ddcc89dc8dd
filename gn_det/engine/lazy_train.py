"""Train or evaluate a LazyConfig (``.py``) config: Detectron2's ``tools/lazyconfig_train_net.py``
flow, which is not part of the installed ``detectron2`` package, with gn_det's checkpointer.

``gn-det-train --config-file X.py`` (``tools/train_net.py``) comes here; ``.yaml`` configs take
``train_net.train_net_main``. The config must define what Detectron2's lazy trainer reads:
``model``, ``dataloader.{train,test,evaluator}``, ``optimizer``, ``lr_multiplier`` and ``train``
(``configs/common/train.py``'s keys); trailing arguments are its ``key=value`` overrides.

What differs from Detectron2's script, on top of it:
- checkpoints are written atomically and loaded safely (``SafeDetectionCheckpointer``);
- training stops at the first NaN/Inf loss, and before a checkpoint would save NaN/Inf weights
  (``NonFiniteLossHook``), naming the last good checkpoint;
- ``--dataset NAME FILE IMAGE_DIR`` registers datasets (COCO, VIA, labelme) before the config
  is used, so ``dataloader.train.dataset.names=NAME`` can name them.
The YAML-only parts of gn_det's trainer (validation report before launch, the resumable data
stream, class counts read from the datasets, ``ap_report.json``) are not applied to ``.py`` configs.
"""
import logging
from typing import List

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..checkpoint import SafeDetectionCheckpointer
from ..third_party_warnings import ignore_third_party_warnings
from .hooks import NonFiniteLossHook
from .setup import register_datasets_from_args

__all__ = [
    "LAZY_TRAINER_KEYS",
    "is_lazy_config",
    "lazy_config_problems",
    "lazy_setup",
    "lazy_test",
    "lazy_train",
    "lazy_train_main",
]

# The top-level names Detectron2's lazy trainer reads from a config.
LAZY_TRAINER_KEYS = ("model", "dataloader", "optimizer", "lr_multiplier", "train")

logger = logging.getLogger(__name__)


def is_lazy_config(config_file: str) -> bool:
    """Whether ``config_file`` is a LazyConfig Python file (Detectron2 tells them by suffix)."""
    return bool(config_file) and config_file.endswith(".py")


def lazy_config_problems(config_file: str, opts=()) -> List[str]:
    """What would stop a ``.py`` config before its first iteration: it does not load, an override
    does not apply, a name the lazy trainer reads is missing, or the model does not build (built
    on the ``meta`` device: shapes only, no memory, no initialization). Datasets and checkpoints
    are not checked here."""
    try:
        cfg = LazyConfig.apply_overrides(LazyConfig.load(config_file), list(opts or []))
    except Exception as e:  # any error of the user's file or overrides, reported as such
        return [f"{config_file} with overrides {list(opts or [])} does not load: {type(e).__name__}: {e}"]
    problems = [
        f"{config_file} defines no {key!r}, which Detectron2's lazy trainer reads"
        for key in LAZY_TRAINER_KEYS
        if key not in cfg
    ]
    if "model" in cfg:
        try:
            with torch.device("meta"):
                instantiate(cfg.model)
        except Exception as e:
            problems.append(f"{config_file}: the model does not build: {type(e).__name__}: {e}")
    return problems


def lazy_setup(args):
    """Load the config, apply the ``key=value`` overrides, register ``--dataset`` entries, then
    Detectron2's ``default_setup`` (logging, ``config.yaml`` in ``train.output_dir``, seed)."""
    ignore_third_party_warnings()  # the known-harmless ones only (gn_det/third_party_warnings.py)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), list(args.opts or []))
    register_datasets_from_args(args)
    default_setup(cfg, args)
    return cfg


def lazy_test(cfg, model):
    """Inference and evaluation on ``dataloader.test`` with ``dataloader.evaluator`` (if any)."""
    if "evaluator" not in cfg.dataloader:
        return None
    # The loader first: it generates gn_det's embedded datasets, whose json the evaluator opens.
    loader = instantiate(cfg.dataloader.test)
    results = inference_on_dataset(model, loader, instantiate(cfg.dataloader.evaluator))
    print_csv_format(results)
    return results


def lazy_train(args, cfg):
    """Detectron2's ``do_train``: build, then train from ``train.init_checkpoint`` (or resume)."""
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.device)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = SafeDetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks(
        [
            # First: it must see each loss before backward and the weights before a save.
            NonFiniteLossHook(checkpointer),
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: lazy_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period
            )
            if main
            else None,
        ]
    )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    # A checkpoint stores the iteration that just finished: continue at the next one.
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)
    return trainer


def lazy_train_main(args):
    """The ``.py`` counterpart of ``train_net_main``, in every process: set up, then evaluate
    ``train.init_checkpoint`` (``--eval-only``) or train."""
    cfg = lazy_setup(args)
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model)
        SafeDetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return lazy_test(cfg, model)
    return lazy_train(args, cfg)
