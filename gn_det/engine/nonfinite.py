"""Stop training at the first non-finite loss, before it can reach the weights or a checkpoint.

Detectron2's own check (in ``SimpleTrainer.write_metrics``) runs only on the main process, only
every ``gather_metric_period`` iterations, and after ``backward``; its message shows the loss dict
but not which terms failed. This hook checks every term of every training forward, on every rank,
right after the forward: the optimizer step of that iteration is never taken, so the weights in
memory and the last saved checkpoint stay finite.

Finite losses can still give non-finite weights (an overflowing step with a huge learning rate).
So before each periodic checkpoint the hook also checks the weights, and refuses to let a
non-finite model be saved over the last good checkpoint.
"""

import logging
import math
import sys
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from fvcore.common.checkpoint import PeriodicCheckpointer

__all__ = ["NonFiniteLossError", "NonFiniteWeightsError", "NonFiniteLossHook"]

logger = logging.getLogger(__name__)

_FIXES = (
    "Usual fixes: a lower SOLVER.BASE_LR, a longer SOLVER.WARMUP_ITERS, "
    "SOLVER.CLIP_GRADIENTS.ENABLED True, or checking the data for degenerate boxes/masks "
    "(tools/validate.py)."
)


def _kept(last_checkpoint: Optional[str]) -> str:
    if last_checkpoint:
        return (
            f"The last good checkpoint is kept: {last_checkpoint} (resume from it with --resume)."
        )
    return "No checkpoint had been saved yet."


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
        super().__init__(
            f"Non-finite loss at iteration {iteration}: {bad}"
            + (f" (finite: {good})" if good else "")
            + ". Training stopped before this iteration's optimizer step, so the weights were not "
            f"updated with it. {_kept(last_checkpoint)} {_FIXES}"
        )


class NonFiniteWeightsError(FloatingPointError):
    """The optimizer step of ``iteration`` made weights non-finite (``tensors``: their names)."""

    def __init__(self, iteration: int, tensors: List[str], last_checkpoint: Optional[str]):
        self.iteration = iteration
        self.tensors = tensors
        self.last_checkpoint = last_checkpoint
        shown = ", ".join(tensors[:5]) + (
            f" and {len(tensors) - 5} more" if len(tensors) > 5 else ""
        )
        super().__init__(
            f"Non-finite weights after the optimizer step of iteration {iteration} (the losses were "
            f"finite): {shown}. The checkpoint due at this iteration was not saved. "
            f"{_kept(last_checkpoint)} {_FIXES}"
        )


class NonFiniteLossHook(HookBase):
    """Stop training on NaN/Inf losses (every iteration) and NaN/Inf weights (before checkpoints).

    Works with any Detectron2 trainer (``DefaultTrainer``, ``SimpleTrainer``, ``AMPTrainer``): it
    registers a forward hook on ``trainer.model`` in ``before_train`` and inspects each loss dict
    (``{name: scalar tensor}``) the model returns in training mode, raising
    :class:`NonFiniteLossError` before backward. In multi-process training all ranks agree (an
    all-reduce of one flag per forward), so every rank stops at the same iteration instead of the
    healthy ranks hanging in the next collective.

    At iterations where a ``PeriodicCheckpointer`` will save, ``after_step`` checks every
    parameter and buffer and raises :class:`NonFiniteWeightsError` instead of letting a broken
    model replace the last good checkpoint. For that it must come before the checkpointer in the
    hook list (put it first).

    Args:
        checkpointer: where to look up the last complete checkpoint for the message; defaults to
            ``trainer.checkpointer`` when the trainer has one.
    """

    def __init__(self, checkpointer=None):
        self._checkpointer = checkpointer
        self._handle = None
        self._save_schedule: Optional[Tuple[int, int]] = None  # (period, max_iter)

    def before_train(self):
        self._handle = self.trainer.model.register_forward_hook(self._check_output)
        self._save_schedule = self._find_save_schedule()

    def after_train(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        # Detectron2's own divergence checks (e.g. "Predicted boxes or scores contain Inf/NaN")
        # raise inside the forward, before any loss exists. after_train runs in the trainer's
        # `finally`, so the exception on its way out is visible here: say where training stopped
        # and what is safe to resume from.
        error = sys.exc_info()[1]
        if isinstance(error, FloatingPointError) and not isinstance(
            error, (NonFiniteLossError, NonFiniteWeightsError)
        ):
            logger.error(
                f"Training diverged at iteration {self.trainer.iter} ({error}). "
                f"{_kept(self._last_checkpoint())} Every checkpoint was checked for finite weights "
                f"before it was saved. {_FIXES}"
            )

    def after_step(self):
        if self._save_schedule is None:
            return
        period, max_iter = self._save_schedule
        iteration = self.trainer.iter
        if (iteration + 1) % period and iteration < max_iter - 1:
            return
        model = self.trainer.model
        tensors = list(model.named_parameters()) + list(model.named_buffers())
        bad = [name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            error = NonFiniteWeightsError(iteration, bad, self._last_checkpoint())
            logger.error(str(error))
            raise error

    def _find_save_schedule(self) -> Optional[Tuple[int, int]]:
        # TrainerBase keeps its hooks in _hooks (no public accessor). Detectron2 gives the
        # periodic checkpointer to the main process only, so the schedule is shared with all ranks
        # (identical weights under DDP: every rank must reach the same decision).
        schedule = None
        for hook in getattr(self.trainer, "_hooks", []):
            if isinstance(hook, PeriodicCheckpointer):
                schedule = (int(hook.period), int(self.trainer.max_iter))
        if comm.get_world_size() > 1:
            schedule = next((s for s in comm.all_gather(schedule) if s is not None), None)
        return schedule

    def _check_output(self, module: torch.nn.Module, inputs, output) -> None:
        if not module.training or not isinstance(output, Mapping) or not output:
            return
        terms = {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}
        if not terms:
            return
        values = torch.stack([v.detach().float().reshape(-1).sum() for v in terms.values()])
        nonfinite_any_rank = self._gather_nonfinite(torch.isfinite(values), list(terms))
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
