"""Checkpoints that survive crashes and cannot run code: atomic saves, restricted loading."""

from .atomic import AtomicFileWriter, AtomicWritePathManager, remove_stale_partial_files
from .rng_state import RNGStateHook, get_rng_state, set_rng_state
from .checkpointer import SafeDetectionCheckpointer, normalize_pickled_checkpoint
from .safe_load import (
    PICKLE_ALLOWED_GLOBALS,
    TRUST_ENV_VAR,
    CheckpointLoadError,
    RestrictedUnpickler,
    UnsafeCheckpointError,
    load_pickle_file,
    load_torch_file,
    trust_from_env,
)

__all__ = [
    "AtomicFileWriter",
    "AtomicWritePathManager",
    "remove_stale_partial_files",
    "SafeDetectionCheckpointer",
    "RNGStateHook",
    "get_rng_state",
    "set_rng_state",
    "normalize_pickled_checkpoint",
    "PICKLE_ALLOWED_GLOBALS",
    "TRUST_ENV_VAR",
    "CheckpointLoadError",
    "RestrictedUnpickler",
    "UnsafeCheckpointError",
    "load_pickle_file",
    "load_torch_file",
    "trust_from_env",
]
