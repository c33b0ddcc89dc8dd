"""Train, resume, fine-tune or evaluate: the whole flow of ``tools/train_net.py``, in one module.

Laid out like Detectron2's ``projects/PointRend/train_net.py``: a ``Trainer(DefaultTrainer)``
that overrides only what differs, ``train_net_main(args)`` (set up; then evaluate with
``--eval-only``, else train or ``--resume``), and ``invoke_main`` (parse, validate, ``launch``).
It lives in the package, not in the tool script, because ``tools/evaluate.py``, the sweep and
the tests run the same flow; the parts it calls live beside it: ``setup`` (config, datasets,
command lines), ``hooks``, ``gn_det.checkpoint`` and ``gn_det.data.stream``.

What ``Trainer`` changes in ``DefaultTrainer``:
- ``build_train_loader``: Detectron2's loader over a stream that ``--resume`` continues exactly
  (same batches, same augmentations; ``gn_det.data.stream``).
- ``build_hooks``: ``NonFiniteLossHook``, ``RNGStateHook`` and ``DataStreamHook`` first, then
  Detectron2's, then ``ReplicaCheckHook`` (several processes: do all end with the same weights?);
  the checkpointer is ``build_checkpointer``'s.
- ``build_checkpointer``: the one place the checkpointer is made (``FineTuneCheckpointer``), for
  training, resuming and evaluation alike; it saves the run's classes in every checkpoint.
- ``build_evaluator``: ``COCOAPEvaluator`` (all 12 COCOeval numbers, pycocotools' numbers,
  computed as ``TEST.COCO_EVAL`` says).
- ``test``: also writes ``ap_report.json`` / ``ap_report.md`` (with what computed them) into
  OUTPUT_DIR and logs the table.
- multi-process training on CPU (Gloo): Detectron2 hands DistributedDataParallel the process's
  local rank as a GPU id, which DDP rejects for a CPU model; a CPU model is wrapped without one.
"""
import contextlib
import functools
import logging
import os
import weakref
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as d2_defaults
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..checkpoint import FineTuneCheckpointer
from ..checkpoint.dataset_metadata import check_dataset_classes, dataset_metadata_from_config, find_dataset_metadata
from ..data.stream import build_resumable_train_loader
from ..evaluation import (
    COCOAPEvaluator,
    build_ap_report,
    evaluator_settings_from_config,
    format_ap_report_markdown,
    run_info_from_config,
    tasks_from_config,
    write_ap_report,
)
from .hooks import DataStreamHook, NonFiniteLossHook, RNGStateHook
from .lazy_train import is_lazy_config, lazy_train_main
from .replica_check import ReplicaCheckHook
from .setup import argument_parser, launch_from_args, setup, validate_and_launch

__all__ = ["Trainer", "train_net_main", "evaluate_checkpoint", "invoke_main"]

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    """Detectron2's DefaultTrainer for gn_det's configs; see the module docstring."""

    def __init__(self, cfg):
        with _cpu_ddp_without_device_ids(cfg):
            super().__init__(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_resumable_train_loader(cfg)

    def build_hooks(self):
        # DefaultTrainer.__init__ makes a plain DetectionCheckpointer just before calling
        # build_hooks; replace it first so the periodic checkpointer and resume use ours.
        self.checkpointer = self.build_checkpointer(self.cfg, self._trainer.model, trainer=weakref.proxy(self))
        # First: stop at a NaN/Inf loss before its optimizer step and check the weights before
        # each periodic save; keep RNG states and the data stream's position in checkpoints.
        # Last: once the final checkpoint is written, compare every process's weights.
        return [NonFiniteLossHook(), RNGStateHook(), DataStreamHook()] + super().build_hooks() + [ReplicaCheckHook()]

    @classmethod
    def build_checkpointer(cls, cfg, model, **checkpointables):
        """The checkpointer for ``model`` saving into OUTPUT_DIR (extra state as keyword args)."""
        return FineTuneCheckpointer(
            model, cfg.OUTPUT_DIR, dataset_metadata=dataset_metadata_from_config(cfg), **checkpointables
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOAPEvaluator(dataset_name, tasks=tasks_from_config(cfg), output_dir=output_folder,
                               **evaluator_settings_from_config(cfg))

    @classmethod
    def test(cls, cfg, model, evaluators=None, *, weights: Optional[str] = None, iteration: Optional[int] = None):
        """Detectron2's ``test``, then the AP report of the results (main process).

        ``weights``/``iteration`` name what was evaluated; during training they are filled in
        from the event storage (and the checkpoint saved at that iteration, if any).
        """
        if evaluators is None and cfg.DATASETS.TEST:  # built here to read what computed the numbers
            evaluators = [cls.build_evaluator(cfg, name) for name in cfg.DATASETS.TEST]
        results = super().test(cfg, model, evaluators)
        evaluated_by, num_images = {}, {}
        for name, evaluator in zip(cfg.DATASETS.TEST, evaluators if isinstance(evaluators, list) else [evaluators]):
            evaluated_by[name] = dict(getattr(evaluator, "evaluated_by", {}) or {})
            if getattr(evaluator, "num_images", None) is not None:
                num_images[name] = evaluator.num_images
        if comm.is_main_process() and cfg.DATASETS.TEST:
            if iteration is None:
                with contextlib.suppress(AssertionError):  # no storage outside training
                    # The index of the last finished step, as in checkpoint names; after the last
                    # step Detectron2's storage already counts MAX_ITER.
                    iteration = min(get_event_storage().iter, cfg.SOLVER.MAX_ITER - 1)
                    weights = weights or _checkpoint_at(cfg, iteration)
            _write_report(cfg, results, weights, iteration, evaluated_by, num_images)
        return results


def train_net_main(args, trainer_cls=Trainer):
    """``tools/train_net.py``'s main, in every process: set up, then evaluate (``--eval-only``)
    or train (``--resume``: continue the last checkpoint in OUTPUT_DIR). Returns the evaluation
    results (main process) or the trainer's."""
    cfg = setup(args)
    if args.eval_only:
        return evaluate_checkpoint(cfg, resume=args.resume, trainer_cls=trainer_cls)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def evaluate_checkpoint(cfg, resume: bool = False, trainer_cls=Trainer):
    """Load ``MODEL.WEIGHTS`` (``resume``: the last checkpoint in OUTPUT_DIR), run inference and
    COCO evaluation on ``DATASETS.TEST``, write ``ap_report.json``. Returns Detectron2's results.

    The checkpoint must fit the datasets: the same number of classes, and the same class names
    in the same order where the checkpoint records them."""
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
    extra = checkpointer.load_for_inference(weights, hint)
    trained_on = find_dataset_metadata(weights, extra)
    for name in cfg.DATASETS.TEST:
        check_dataset_classes(trained_on, name, weights)
    return trainer_cls.test(cfg, model, weights=weights, iteration=extra.get("iteration"))


def invoke_main(argv=None, epilog=None):
    """``gn-det-train`` / ``tools/train_net.py``: parse, check every input before anything is
    built (config, datasets, checkpoint; all problems at once), then Detectron2's ``launch`` (one
    process per GPU, or ``--num-gpus`` CPU processes over Gloo). A ``.py`` (LazyConfig) config
    goes to ``lazy_train_main`` instead, Detectron2's lazy training flow."""
    args = argument_parser(epilog).parse_args(argv)
    print("Command Line Args:", args)
    if is_lazy_config(args.config_file):
        return launch_from_args(lazy_train_main, args)
    return validate_and_launch(train_net_main, args)


@contextlib.contextmanager
def _cpu_ddp_without_device_ids(cfg):
    """While DefaultTrainer wraps the model, give DDP no device_ids if the model is on the CPU."""
    original = d2_defaults.create_ddp_model
    if comm.get_world_size() > 1 and cfg.MODEL.DEVICE == "cpu":
        d2_defaults.create_ddp_model = functools.partial(original, device_ids=None)
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


def _write_report(cfg, results, weights: Optional[str], iteration: Optional[int], evaluated_by=None,
                  num_images=None) -> None:
    by_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
    # The evaluator knows its image count; loading the dataset again just to count it took
    # seconds per evaluation at COCO size (Detectron2's catalog does not cache).
    num_images = dict(num_images or {})
    for name in by_dataset:
        if name not in num_images:
            num_images[name] = len(DatasetCatalog.get(name))
    report = build_ap_report(
        {name: res for name, res in by_dataset.items() if res},
        class_names={n: MetadataCatalog.get(n).get("thing_classes") for n in by_dataset},
        num_images=num_images,
        run=run_info_from_config(cfg, comm.get_world_size(), _config_file(cfg)),
        weights=weights,
        iteration=iteration,
        evaluated_by=evaluated_by,
    )
    paths = write_ap_report(report, cfg.OUTPUT_DIR)
    logger.info(f"AP report written to {paths['json']} and {paths['markdown']}:\n\n" + format_ap_report_markdown(report))


def _checkpoint_at(cfg, iteration: int) -> Optional[str]:
    """The checkpoint PeriodicCheckpointer saved at ``iteration``, if it exists."""
    names = [f"model_{iteration:07d}.pth"]
    if iteration == cfg.SOLVER.MAX_ITER - 1:
        names.insert(0, "model_final.pth")
    for name in names:
        path = os.path.join(cfg.OUTPUT_DIR, name)
        if os.path.isfile(path):
            return path
    return None


def _config_file(cfg) -> str:
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    return path if os.path.isfile(path) else ""
