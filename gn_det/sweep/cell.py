"""Training one sweep cell with gn_det's trainer, and timing its training loop.

A cell is an ordinary ``tools/train_net.py`` run of its derived config (always with ``--resume``:
Detectron2 continues from ``last_checkpoint`` in OUTPUT_DIR when there is one, else starts from
MODEL.WEIGHTS). The only addition is ``TrainTimeHook``, which appends the wall time of each
training segment (start or resume -> last iteration, final evaluation excluded) to
``train_time.json``, so the sweep can report training time also for resumed runs.

``python -m gn_det.sweep.cell --config-file CFG [--num-gpus N] [--dataset ...]`` is what the
sweep runs in a subprocess per cell: memory is returned after each cell and a crash stays in it.
"""

import functools
import json
import os
import time

from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["TRAIN_TIME_NAME", "TrainTimeHook", "sweep_trainer_cls", "train_cell", "load_train_time", "main"]

TRAIN_TIME_NAME = "train_time.json"


class TrainTimeHook(HookBase):
    """Records ``{"start_iter", "end_iter", "seconds"}`` of a training segment that reaches
    MAX_ITER, in OUTPUT_DIR/train_time.json (main process). Registered first among the hooks, so
    its ``after_step`` at the last iteration runs before the final evaluation."""

    def __init__(self, output_dir: str):
        self._output_dir = output_dir
        self._start = None
        self._start_iter = None

    def before_train(self):
        self._start = time.perf_counter()
        self._start_iter = self.trainer.start_iter

    def after_step(self):
        if self.trainer.iter + 1 != self.trainer.max_iter or not comm.is_main_process():
            return
        segment = {
            "start_iter": int(self._start_iter),
            "end_iter": int(self.trainer.max_iter),
            "seconds": round(time.perf_counter() - self._start, 3),
        }
        path = os.path.join(self._output_dir, TRAIN_TIME_NAME)
        segments = load_train_time(self._output_dir)
        segments.append(segment)
        with open(path + ".tmp", "w") as f:
            json.dump(segments, f, indent=2)
        os.replace(path + ".tmp", path)


def load_train_time(output_dir: str) -> list:
    """The training segments recorded in ``output_dir`` (empty list when none)."""
    path = os.path.join(output_dir, TRAIN_TIME_NAME)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def sweep_trainer_cls():
    """gn_det's ``Trainer`` subclass with ``TrainTimeHook`` (built on first use)."""
    # Imported here: gn_det.engine pulls in evaluation and data, not needed for planning/plots.
    from ..engine import Trainer

    class SweepTrainer(Trainer):
        """gn_det's Trainer plus ``TrainTimeHook``."""

        def build_hooks(self):
            return [TrainTimeHook(self.cfg.OUTPUT_DIR)] + super().build_hooks()

    return SweepTrainer


def train_cell(args):
    """Train (resume) and evaluate one cell; ``args`` are ``tools/train_net.py``'s."""
    from ..engine import train_net_main

    return train_net_main(args, trainer_cls=sweep_trainer_cls())


def main(argv=None):
    import gn_det  # noqa: F401  registers models and datasets in this process

    from ..engine import argument_parser, launch_from_args

    launch_from_args(train_cell, argument_parser().parse_args(argv))


if __name__ == "__main__":
    main()
