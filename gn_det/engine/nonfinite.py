"""Stop training at the first non-finite loss, before it can reach the weights or a checkpoint.

Detectron2's own check (in ``SimpleTrainer.write_metrics``) runs only on the main process, only
every ``gather_metric_period`` iterations, and after ``backward``; its message shows the loss dict
but not which terms failed. This hook checks every term of every training forward, on every rank,
right after the forward: the optimizer step of that iteration is never taken, so the weights in
memory and the last saved checkpoint stay finite.
"""

import logging
import math
from typing import Dict, Mapping, Optional

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["NonFiniteLossError", "NonFiniteLossHook"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training stopped on a NaN/Inf loss.

    Attributes:
        iteration: the iteration whose forward produced it.
        losses: every loss term's value on this rank (float; nan/inf for the bad ones).
        nonfinite_terms: names of the NaN/Inf terms (on any rank).
        last_checkpoint: path of the last complete checkpoint, or None if none was saved yet.
    """

    def __init__(
        self,
        iteration: int,
        losses: Dict[str, float],
        nonfinite_terms,
        last_checkpoint: Optional[str],
    ):
        self.iteration = iteration
        self.losses = losses
        self.nonfinite_terms = list(nonfinite_terms)
        self.last_checkpoint = last_checkpoint
        bad = ", ".join(
            (
                f"{k}={losses[k]}"
                if not math.isfinite(losses.get(k, 0.0))
                else f"{k} (non-finite on another rank)"
            )
            for k in self.nonfinite_terms
        )
        good = ", ".join(f"{k}={v:.4g}" for k, v in losses.items() if k not in self.nonfinite_terms)
        if last_checkpoint:
            kept = f"The last good checkpoint is kept: {last_checkpoint} (resume from it with --resume)."
        else:
            kept = "No checkpoint had been saved yet."
        super().__init__(
            f"Non-finite loss at iteration {iteration}: {bad}"
            + (f" (finite: {good})" if good else "")
            + ". Training stopped before this iteration's optimizer step, so the weights were not "
            f"updated with it. {kept} Usual fixes: a lower SOLVER.BASE_LR, a longer "
            "SOLVER.WARMUP_ITERS, SOLVER.CLIP_GRADIENTS.ENABLED True, or checking the data for "
            "degenerate boxes/masks (tools/validate.py)."
        )


class NonFiniteLossHook(HookBase):
    """Raise :class:`NonFiniteLossError` as soon as a training forward returns a NaN/Inf loss term.

    Works with any Detectron2 trainer (``DefaultTrainer``, ``SimpleTrainer``, ``AMPTrainer``): it
    registers a forward hook on ``trainer.model`` in ``before_train`` and inspects each loss dict
    (``{name: scalar tensor}``) the model returns in training mode. In multi-process training all
    ranks agree (an all-reduce of one flag per forward), so every rank stops at the same iteration
    instead of the healthy ranks hanging in the next collective.

    Args:
        checkpointer: where to look up the last complete checkpoint for the message; defaults to
            ``trainer.checkpointer`` when the trainer has one.
    """

    def __init__(self, checkpointer=None):
        self._checkpointer = checkpointer
        self._handle = None

    def before_train(self):
        model = self.trainer.model
        self._handle = model.register_forward_hook(self._check_output)

    def after_train(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _check_output(self, module: torch.nn.Module, inputs, output) -> None:
        if not module.training or not isinstance(output, Mapping) or not output:
            return
        terms = {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}
        if not terms:
            return
        values = torch.stack([v.detach().float().reshape(-1).sum() for v in terms.values()])
        finite = torch.isfinite(values)
        nonfinite_any_rank = self._gather_nonfinite(finite, list(terms))
        if not nonfinite_any_rank:
            return
        losses = {k: float(v) for k, v in zip(terms, values.tolist())}
        error = NonFiniteLossError(
            getattr(self.trainer, "iter", -1), losses, nonfinite_any_rank, self._last_checkpoint()
        )
        logger.error(str(error))
        raise error

    @staticmethod
    def _gather_nonfinite(finite: torch.Tensor, names) -> list:
        """Names of the terms that are non-finite on any rank (ranks return the same names)."""
        bad = ~finite
        if comm.get_world_size() > 1:
            # One small all-reduce per iteration, on the losses' device (NCCL needs CUDA tensors).
            flags = bad.to(torch.int32)
            torch.distributed.all_reduce(flags)
            bad = flags > 0
        return [name for name, is_bad in zip(names, bad.tolist()) if is_bad]

    def _last_checkpoint(self) -> Optional[str]:
        checkpointer = self._checkpointer or getattr(self.trainer, "checkpointer", None)
        if checkpointer is None or not getattr(checkpointer, "save_dir", ""):
            return None
        try:
            if checkpointer.has_checkpoint():
                return checkpointer.get_checkpoint_file()
        except Exception:  # the message must not fail because of the lookup
            return None
        return None
