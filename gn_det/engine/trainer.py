"""gn_det's trainer: Detectron2's ``DefaultTrainer`` with COCO AP reports and fine-tuning loads.

What differs from ``DefaultTrainer``:
- ``build_evaluator``: ``COCOAPEvaluator`` (all 12 COCOeval numbers, official pycocotools).
- ``test``: also writes ``ap_report.json`` / ``ap_report.md`` into OUTPUT_DIR and logs the table.
- ``build_checkpointer``: the one place the checkpointer is made (``FineTuneCheckpointer``), for
  training, resuming and evaluation alike; override it to change how checkpoints are saved/loaded.
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

from ..evaluation import (
    COCOAPEvaluator,
    build_ap_report,
    format_ap_report_markdown,
    run_info_from_config,
    tasks_from_config,
    write_ap_report,
)
from ..checkpoint import RNGStateHook
from .checkpoint import FineTuneCheckpointer
from .nonfinite import NonFiniteLossHook

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


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


class Trainer(DefaultTrainer):
    """Detectron2's DefaultTrainer for gn_det's configs; see the module docstring."""

    def __init__(self, cfg):
        with _cpu_ddp_without_device_ids(cfg):
            super().__init__(cfg)

    def build_hooks(self):
        # DefaultTrainer.__init__ makes a plain DetectionCheckpointer just before calling
        # build_hooks; replace it first so the periodic checkpointer and resume use ours.
        self.checkpointer = self.build_checkpointer(self.cfg, self._trainer.model, trainer=weakref.proxy(self))
        # First: stop at a NaN/Inf loss before its optimizer step and check the weights before
        # each periodic save; keep the RNG states in checkpoints so --resume continues the run.
        return [NonFiniteLossHook(), RNGStateHook()] + super().build_hooks()

    @classmethod
    def build_checkpointer(cls, cfg, model, **checkpointables):
        """The checkpointer for ``model`` saving into OUTPUT_DIR (extra state as keyword args)."""
        return FineTuneCheckpointer(model, cfg.OUTPUT_DIR, **checkpointables)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOAPEvaluator(dataset_name, tasks=tasks_from_config(cfg), output_dir=output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None, *, weights: Optional[str] = None, iteration: Optional[int] = None):
        """Detectron2's ``test``, then the AP report of the results (main process).

        ``weights``/``iteration`` name what was evaluated; during training they are filled in
        from the event storage (and the checkpoint saved at that iteration, if any).
        """
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and cfg.DATASETS.TEST:
            if iteration is None:
                with contextlib.suppress(AssertionError):  # no storage outside training
                    # The index of the last finished step, as in checkpoint names; after the last
                    # step Detectron2's storage already counts MAX_ITER.
                    iteration = min(get_event_storage().iter, cfg.SOLVER.MAX_ITER - 1)
                    weights = weights or _checkpoint_at(cfg, iteration)
            by_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
            report = build_ap_report(
                {name: res for name, res in by_dataset.items() if res},
                class_names={n: MetadataCatalog.get(n).get("thing_classes") for n in by_dataset},
                num_images={n: len(DatasetCatalog.get(n)) for n in by_dataset},
                run=run_info_from_config(cfg, comm.get_world_size(), _config_file(cfg)),
                weights=weights,
                iteration=iteration,
            )
            paths = write_ap_report(report, cfg.OUTPUT_DIR)
            logger.info(f"AP report written to {paths['json']} and {paths['markdown']}:\n\n"
                        + format_ap_report_markdown(report))
        return results


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
