"""Random number generator state in checkpoints, so that ``--resume`` continues the same run.

Detectron2 checkpoints the model, optimizer, scheduler and iteration, but not the RNG state:
after a resume, augmentations (``np.random``) and proposal sampling (``torch.randperm``) draw
other numbers than the uninterrupted run would have, so the two runs drift apart. This hook adds
the torch, CUDA, numpy and Python RNG states to every checkpoint (through the trainer's
state_dict, which ``DefaultTrainer``'s checkpointer saves) and restores them on resume.

Exact continuation holds for single-process runs with in-process data loading
(``DATALOADER.NUM_WORKERS 0``) and data that does not depend on the sampler position. In
multi-process runs only the main process saves, so the other ranks' states are unknown; there
nothing is restored and each rank keeps its fresh seed (Detectron2's behaviour).
"""

import logging
import random
from typing import Any, Dict

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["RNGStateHook", "get_rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)


def get_rng_state() -> Dict[str, Any]:
    """This process's RNG states as tensors and numbers (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what get_rng_state returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateHook(HookBase):
    """Saves the RNG states with each checkpoint and restores them on resume (single process).

    Register it on a trainer whose checkpointer saves the trainer (``DefaultTrainer`` does:
    ``trainer=weakref.proxy(self)``). The state is taken when the checkpoint is written, right
    after the step it belongs to, and restored so that the resumed run's first step sees the
    state the uninterrupted run's next step saw:

    - numpy and Python states (data augmentation) in ``before_train``, before any data is read;
    - torch (and CUDA) states at the first forward of the model, i.e. after that step's data was
      read: Detectron2's loader creates its inner ``torch.utils.data.DataLoader`` iterator on the
      first batch, which draws a seed from torch's RNG; the uninterrupted run made that draw
      before its first iteration, not at the resume point.
    """

    def __init__(self):
        self._pending = None
        self._forward_handle = None

    def state_dict(self) -> Dict[str, Any]:
        return {"world_size": comm.get_world_size(), "rng": get_rng_state()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if comm.get_world_size() > 1 or state_dict.get("world_size", 1) > 1:
            logger.info(
                "Multi-process run: RNG states are not restored on resume (each rank is seeded afresh)."
            )
            return
        self._pending = state_dict["rng"]

    def before_train(self):
        if self._pending is None:
            return
        state = self._pending
        self._pending = None
        set_rng_state(
            {"torch": torch.get_rng_state(), "numpy": state["numpy"], "python": state["python"]}
        )

        def restore_torch(module, inputs):
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
            self._forward_handle.remove()
            self._forward_handle = None
            logger.info("Restored the RNG states saved with the checkpoint (torch/numpy/python).")

        self._forward_handle = self.trainer.model.register_forward_pre_hook(restore_torch)

    def after_train(self):
        if self._forward_handle is not None:
            self._forward_handle.remove()
            self._forward_handle = None
