"""gn_det's training hooks: stop at non-finite losses, and make ``--resume`` continue the same run.

- ``NonFiniteLossHook``: stops training at the first NaN/Inf loss, before it reaches the weights or
  a checkpoint, and refuses to save non-finite weights.
- ``RNGStateHook``: saves every rank's torch/CUDA/numpy/Python RNG states with each checkpoint and
  restores them on resume.
- ``DataStreamHook``: saves where the training data stream is (``gn_det.data.stream``) and
  continues it there on resume.

gn_det's ``Trainer`` puts them first, in this order, before Detectron2's hooks.

Detectron2's own non-finite check (in ``SimpleTrainer.write_metrics``) runs only on the main
process, only every ``gather_metric_period`` iterations, and after ``backward``; its message shows
the loss dict but not which terms failed. ``NonFiniteLossHook`` checks every term of every
training forward, on every rank, right after the forward: the optimizer step of that iteration is
never taken, so the weights in memory and the last saved checkpoint stay finite. Finite losses can
still give non-finite weights (an overflowing step with a huge learning rate), so before each
periodic checkpoint it also checks the weights.
"""

import logging
import math
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from fvcore.common.checkpoint import PeriodicCheckpointer

from ..checkpoint.rng_state import get_rng_state, set_rng_state
from ..data.stream import ResumableSampler

__all__ = [
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "NonFiniteLossHook",
    "RNGStateHook",
    "DataStreamHook",
]

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


def _find_save_schedule(trainer) -> Optional[Tuple[int, int]]:
    """``(period, max_iter)`` of the trainer's ``PeriodicCheckpointer``, known on every rank.

    Detectron2 gives the periodic checkpointer to the main process only, so the schedule is
    shared with all ranks (every rank must reach the same decisions). Collective: every rank calls
    it, in ``before_train``."""
    schedule = None
    for hook in getattr(trainer, "_hooks", []):  # TrainerBase has no public accessor
        if isinstance(hook, PeriodicCheckpointer):
            schedule = (int(hook.period), int(trainer.max_iter))
    if comm.get_world_size() > 1:
        schedule = next((s for s in comm.all_gather(schedule) if s is not None), None)
    return schedule


def _saves_after(schedule: Optional[Tuple[int, int]], iteration: int) -> bool:
    """Whether the periodic checkpointer saves after ``iteration`` (fvcore's rule)."""
    if schedule is None:
        return False
    period, max_iter = schedule
    return (iteration + 1) % period == 0 or iteration >= max_iter - 1


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
        self._save_schedule = _find_save_schedule(self.trainer)

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
        if not _saves_after(self._save_schedule, self.trainer.iter):
            return
        iteration = self.trainer.iter
        model = self.trainer.model
        tensors = list(model.named_parameters()) + list(model.named_buffers())
        bad = [name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            error = NonFiniteWeightsError(iteration, bad, self._last_checkpoint())
            logger.error(str(error))
            raise error

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


class RNGStateHook(HookBase):
    """Saves every rank's RNG states with each checkpoint and restores them on resume.

    Detectron2 checkpoints the model, optimizer, scheduler and iteration, but not the RNG states:
    after a resume, proposal sampling (``torch.randperm``) and anything else drawing from the
    process's generators draws other numbers than the uninterrupted run would have. The states go
    into the trainer's state_dict, which ``DefaultTrainer``'s checkpointer saves
    (``trainer=weakref.proxy(self)``). Only the main process saves, so in multi-process runs every
    rank's states are gathered to it after each step that the periodic checkpointer saves (a
    collective on every rank: the hook must be registered on all of them).

    They are restored so that the resumed run's first step sees the states the uninterrupted
    run's next step saw:

    - numpy and Python states in ``before_train``, before any data is read;
    - torch (and CUDA) states at the first forward of the model, i.e. after that step's data was
      read: creating the loader iterator (on the first batch) draws a seed from torch's generator,
      which the uninterrupted run did before its first iteration, not at the resume point.

    A checkpoint saved with another number of processes is resumed without restoring them (each
    rank keeps its fresh seed, as in Detectron2), and the log says so.
    """

    def __init__(self):
        self._pending = None
        self._forward_handle = None
        self._save_schedule = None
        self._gathered: Optional[Tuple[int, List[Dict[str, Any]]]] = None  # (iteration, per rank)

    def state_dict(self) -> Dict[str, Any]:
        world_size = comm.get_world_size()
        if world_size == 1:
            ranks = [get_rng_state()]
        elif self._gathered is not None and self._gathered[0] == self.trainer.iter:
            ranks = self._gathered[1]
        else:  # a save outside the periodic schedule: the other ranks' states are unknown here
            return {"world_size": world_size, "ranks": []}
        return {"world_size": world_size, "ranks": ranks}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        saved_world = int(state_dict.get("world_size", 1))
        # Checkpoints of earlier gn_det versions hold one state under "rng".
        ranks = state_dict["ranks"] if "ranks" in state_dict else [state_dict.get("rng")]
        world_size, rank = comm.get_world_size(), comm.get_rank()
        if saved_world != world_size or len(ranks) != world_size or ranks[rank] is None:
            logger.warning(
                f"RNG states not restored: the checkpoint holds {len(ranks)} of {saved_world} "
                f"process(es)' states, this run has {world_size} process(es); each rank keeps its "
                "fresh seed, so the resumed run is not the same run as the uninterrupted one."
            )
            return
        self._pending = ranks[rank]

    def before_train(self):
        self._save_schedule = _find_save_schedule(self.trainer)
        if self._pending is None:
            return
        state = self._pending
        self._pending = None
        set_rng_state({"torch": torch.get_rng_state(), "numpy": state["numpy"], "python": state["python"]})

        def restore_torch(module, inputs):
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
            self._forward_handle.remove()
            self._forward_handle = None
            logger.info("Restored the RNG states saved with the checkpoint (torch/numpy/python).")

        self._forward_handle = self.trainer.model.register_forward_pre_hook(restore_torch)

    def after_step(self):
        if comm.get_world_size() > 1 and _saves_after(self._save_schedule, self.trainer.iter):
            self._gathered = (self.trainer.iter, comm.all_gather(get_rng_state()))

    def after_train(self):
        if self._forward_handle is not None:
            self._forward_handle.remove()
            self._forward_handle = None


class DataStreamHook(HookBase):
    """Saves where the training data stream is with each checkpoint; continues it on resume.

    Works with a loader from ``gn_det.data.stream.build_resumable_train_loader`` (gn_det's
    ``Trainer.build_train_loader``): the checkpoint records the stream's seed, processes, batch
    size, dataset size and position; on resume the sampler starts after the batches already
    trained on, so the resumed run reads the batches the uninterrupted run would have. A resume
    with another world size, batch size or dataset says that exact continuation is not possible
    and what the stream does instead (``ResumableSampler.continue_from``). With another loader
    (e.g. Detectron2's plain one) the hook only says that the stream restarts.
    """

    def __init__(self):
        self._saved: Optional[Dict[str, Any]] = None

    def _sampler(self):
        return ResumableSampler.of(self.trainer.data_loader)

    def state_dict(self) -> Dict[str, Any]:
        sampler = self._sampler()
        return sampler.state(next_iteration=self.trainer.iter + 1) if sampler is not None else {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._saved = dict(state_dict)

    def before_train(self):
        # Runs before the loader's iterator (and its workers) exist: they start where this says.
        sampler = self._sampler()
        start_iter = self.trainer.start_iter
        if sampler is None:
            if start_iter > 0:
                logger.warning(
                    "Data stream: this trainer's loader is not gn_det's resumable stream, so on resume "
                    "it starts its shuffled stream over (Detectron2's behaviour): the resumed run is "
                    "statistically like, not equal to, the uninterrupted one."
                )
            return
        message = sampler.continue_from(self._saved, start_iter)
        (logger.warning if "not possible" in message or "assuming" in message else logger.info)(message)
