"""Detectron2's DetectionCheckpointer with atomic saves and loads that cannot run code."""

import logging
from typing import Any, Dict, Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .atomic import AtomicWritePathManager, remove_stale_partial_files
from .safe_load import CheckpointLoadError, load_pickle_file, load_torch_file, trust_from_env

__all__ = ["SafeDetectionCheckpointer", "normalize_pickled_checkpoint"]

logger = logging.getLogger(__name__)


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` (same constructor, same file formats) that

    - saves atomically: ``model_*.pth`` and ``last_checkpoint`` are written to a temporary file in
      the same directory, flushed, fsynced and renamed, so a crash or kill never leaves a truncated
      checkpoint or a ``last_checkpoint`` naming one;
    - loads safely: ``.pth``/``.pyth`` with ``torch.load(weights_only=True)``; ``.pkl`` (Detectron /
      Detectron2 model zoo) through a restricted unpickler that allows only containers and numpy
      arrays. Anything else raises ``UnsafeCheckpointError`` unless ``trust_checkpoint=True``;
    - reports a missing, empty, truncated or corrupt file as ``CheckpointLoadError`` (path + reason).

    Args:
        trust_checkpoint: load with plain pickle (can execute code from the file). ``None`` reads
            the ``GN_DET_TRUST_CHECKPOINT`` environment variable (set by tools' --trust-checkpoint).
        Other arguments: as ``DetectionCheckpointer``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: Optional[bool] = None,
        trust_checkpoint: Optional[bool] = None,
        **checkpointables: Any,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.trust_checkpoint = (
            trust_from_env() if trust_checkpoint is None else bool(trust_checkpoint)
        )
        self.path_manager = AtomicWritePathManager(self.path_manager)
        if self.save_to_disk and save_dir:
            remove_stale_partial_files(save_dir)

    @classmethod
    def replacing(
        cls, checkpointer: DetectionCheckpointer, **kwargs
    ) -> "SafeDetectionCheckpointer":
        """A SafeDetectionCheckpointer with the model, directory and checkpointables of another one
        (e.g. the one ``DefaultTrainer.__init__`` builds)."""
        return cls(
            checkpointer.model,
            checkpointer.save_dir,
            save_to_disk=checkpointer.save_to_disk,
            **kwargs,
            **checkpointer.checkpointables,
        )

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if filename.endswith(".pkl"):
            data = load_pickle_file(filename, trust=self.trust_checkpoint)
            return normalize_pickled_checkpoint(data, filename, self.logger)
        if filename.endswith(".pyth"):
            # pycls checkpoints: {"model_state": state_dict, ...}.
            data = load_torch_file(filename, trust=self.trust_checkpoint)
            if not isinstance(data, dict) or "model_state" not in data:
                raise CheckpointLoadError(
                    filename, "a .pyth (pycls) checkpoint must hold 'model_state'"
                )
            state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        # DetectionCheckpointer handles the rest (URL query flags) and calls _torch_load.
        return super()._load_file(filename)

    def _torch_load(self, f: str) -> Any:
        loaded = load_torch_file(f, trust=self.trust_checkpoint)
        if not isinstance(loaded, dict):
            raise CheckpointLoadError(
                f,
                f"expected a dict (a state_dict or {{'model': ...}}), got {type(loaded).__name__}",
            )
        return loaded


def normalize_pickled_checkpoint(
    data: Any, filename: str, log: Optional[logging.Logger] = None
) -> Dict[str, Any]:
    """The layout DetectionCheckpointer expects from a model-zoo ``.pkl``.

    - Detectron2 model zoo: ``{"model": {name: ndarray}, "__author__": ...}``: returned as is.
    - Detectron (Caffe2) files: ``{"blobs": {...}, ...}`` for detection models or a flat
      ``{name: ndarray}`` for ImageNet models; solver ``*_momentum`` blobs are dropped, and the
      result is marked for Caffe2 name conversion (``matching_heuristics``).
    """
    log = log or logger
    if not isinstance(data, dict):
        raise CheckpointLoadError(filename, f"expected a dict of arrays, got {type(data).__name__}")
    if "model" in data and "__author__" in data:
        log.info(f"Reading a file from '{data['__author__']}'")
        weights = data["model"]
        result = data
    else:
        weights = data.get("blobs", data)
        if not isinstance(weights, dict):
            raise CheckpointLoadError(
                filename, f"'blobs' must be a dict of arrays, got {type(weights).__name__}"
            )
        weights = {k: v for k, v in weights.items() if not k.endswith("_momentum")}
        result = {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}
    if not isinstance(weights, dict):
        raise CheckpointLoadError(
            filename, f"'model' must be a dict of arrays, got {type(weights).__name__}"
        )
    not_arrays = [k for k, v in weights.items() if not isinstance(v, (np.ndarray, torch.Tensor))]
    if not_arrays:
        raise CheckpointLoadError(
            filename,
            f"{len(not_arrays)} weight entries are not arrays (first: {not_arrays[0]!r} is "
            f"{type(weights[not_arrays[0]]).__name__}); expected name -> numpy array",
        )
    return result
