"""Checkpoints: atomic saves, loads that cannot run code, fine-tuning across class counts, and
the run's classes and RNG states as checkpoint data."""

from .atomic import AtomicFileWriter, AtomicWritePathManager, remove_stale_partial_files
from .checkpointer import SafeDetectionCheckpointer, normalize_pickled_checkpoint
from .fine_tune import CheckpointMismatchError, FineTuneCheckpointer
from .rng_state import get_rng_state, set_rng_state
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
    "normalize_pickled_checkpoint",
    "FineTuneCheckpointer",
    "CheckpointMismatchError",
    "get_rng_state",
    "set_rng_state",
    "PICKLE_ALLOWED_GLOBALS",
    "TRUST_ENV_VAR",
    "CheckpointLoadError",
    "RestrictedUnpickler",
    "UnsafeCheckpointError",
    "load_pickle_file",
    "load_torch_file",
    "trust_from_env",
]
