"""Checkpoint file checks, before the model is built: exists, complete, loadable without code."""

import os
import zipfile
from typing import Any, Optional
from urllib.parse import urlparse

import numpy as np
import torch

from ..checkpoint.checkpointer import normalize_pickled_checkpoint
from ..checkpoint.safe_load import (
    CheckpointLoadError,
    UnsafeCheckpointError,
    load_pickle_file,
    load_torch_file,
    trust_from_env,
)
from .report import ValidationReport

__all__ = ["check_checkpoint", "resolve_checkpoint_path"]


def resolve_checkpoint_path(path: str) -> str:
    """The local file Detectron2 would load for ``path``: URL query removed (e.g.
    ``?matching_heuristics=True``), ``detectron2://``/``catalog://``/http(s) resolved (downloaded
    to the cache) through Detectron2's PathManager."""
    path = urlparse(path)._replace(query="").geturl() if "?" in path else path
    if "://" not in path:
        return os.path.expanduser(path)
    from detectron2.utils.file_io import PathManager

    return PathManager.get_local_path(path)


def _state_dict_problem(checkpoint: Any) -> Optional[str]:
    if not isinstance(checkpoint, dict):
        return f"expected a dict (a state_dict or {{'model': state_dict, ...}}), got {type(checkpoint).__name__}"
    weights = checkpoint.get("model", checkpoint)
    if not isinstance(weights, dict):
        return f"'model' must be a dict of tensors, got {type(weights).__name__}"
    if not weights:
        return "the checkpoint holds no weights (empty 'model')"
    bad = [k for k, v in weights.items() if not isinstance(v, (torch.Tensor, np.ndarray))]
    if bad:
        return f"{len(bad)} 'model' entries are not tensors (first: {bad[0]!r}: {type(weights[bad[0]]).__name__})"
    return None


def check_checkpoint(
    path: str,
    *,
    where: str = "MODEL.WEIGHTS",
    trust: Optional[bool] = None,
    report: Optional[ValidationReport] = None,
) -> ValidationReport:
    """Check that ``path`` is a complete checkpoint that loads without running code.

    ``.pth`` (zip format): every member's CRC is verified (a truncated or bit-flipped file
    fails), then the structure is read with ``torch.load(weights_only=True, mmap=True)``.
    ``.pkl``: read through the restricted unpickler. Problems name ``where`` (the config key or
    ``last_checkpoint``), the path and the reason.
    """
    report = report if report is not None else ValidationReport()
    trust = trust_from_env() if trust is None else trust
    label = f"{where} = {path}"
    report.checked.append(f"checkpoint {path}")
    try:
        local = resolve_checkpoint_path(path)
    except Exception as e:
        report.add("checkpoint", label, f"cannot fetch the checkpoint: {type(e).__name__}: {e}")
        return report
    try:
        if local.endswith(".pkl"):
            checkpoint = normalize_pickled_checkpoint(load_pickle_file(local, trust=trust), local)
        else:
            if zipfile.is_zipfile(local):
                with zipfile.ZipFile(local) as archive:
                    bad_member = archive.testzip()
                if bad_member is not None:
                    raise CheckpointLoadError(
                        local, f"corrupt data: member {bad_member!r} fails its CRC check"
                    )
            elif os.path.isfile(local) and os.path.getsize(local) > 0:
                with open(local, "rb") as f:
                    head = f.read(4)
                if head.startswith(b"PK"):
                    raise CheckpointLoadError(
                        local,
                        "truncated zip archive (the end of the file is missing; an interrupted save or download?)",
                    )
            checkpoint = load_torch_file(local, trust=trust, mmap=zipfile.is_zipfile(local))
        problem = _state_dict_problem(checkpoint)
        if problem:
            report.add("checkpoint", label, f"{local}: {problem}")
    except UnsafeCheckpointError as e:
        report.add("checkpoint-unsafe", label, str(e))
    except CheckpointLoadError as e:
        report.add("checkpoint", label, str(e))
    except zipfile.BadZipFile as e:
        report.add(
            "checkpoint", label, f"Cannot load checkpoint {local}: corrupt zip archive ({e})"
        )
    return report
