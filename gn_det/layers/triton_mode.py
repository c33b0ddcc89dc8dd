"""The ``GN_DET_TRITON`` setting and the warning of a Triton fallback; no triton import here, so
``off`` never loads triton and a triton that cannot build gn_det's kernels falls back too."""

import os

__all__ = ["ENV_VAR", "MODES", "triton_mode", "TritonFallbackWarning"]

ENV_VAR = "GN_DET_TRITON"
MODES = ("off", "checked", "on")


def triton_mode() -> str:
    """The ``GN_DET_TRITON`` setting: ``off``, ``checked`` (default, also when unset) or ``on``."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "checked"
    if value not in MODES:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} (environment variable); valid: off, checked (the "
            "default), on."
        )
    return value


class TritonFallbackWarning(UserWarning):
    """A Triton GN kernel variant failed its check and now runs torch's kernels."""
