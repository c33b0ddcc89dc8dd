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
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what get_rng_state returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGStateHook(HookBase):
    """Saves the RNG states with each checkpoint and restores them on resume (single process).

    Register it on a trainer whose checkpointer saves the trainer (``DefaultTrainer`` does:
    ``trainer=weakref.proxy(self)``). Its position in the hook list does not matter: the state is
    taken when the checkpoint is written, i.e. right after the step the checkpoint belongs to.
    """

    def state_dict(self) -> Dict[str, Any]:
        return {"world_size": comm.get_world_size(), "rng": get_rng_state()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if comm.get_world_size() > 1 or state_dict.get("world_size", 1) > 1:
            logger.info("Multi-process run: RNG states are not restored on resume (each rank is seeded afresh).")
            return
        set_rng_state(state_dict["rng"])
        logger.info("Restored the torch/numpy/python RNG states saved with the checkpoint.")
