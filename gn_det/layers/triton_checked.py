"""``GN_DET_TRITON``: how far the fused GN op trusts its Triton kernels on CUDA tensors.

* ``off``: torch's own group-norm kernels (what ``nn.GroupNorm`` runs).
* ``checked`` (the default): Triton behind checks. Before any launch, ``Plan.check`` verifies
  what a launch could not recover from (devices, dtypes, grid limits, offset width, alignment).
  The first time each kernel *variant* (device, dtype, layout, activation, and the shape class
  that selects the compiled kernels: ``Plan.shape_class``) runs its forward, its recompute and
  its backward, the results are compared with torch's GroupNorm(+ReLU) on that same real input.
  Any exception (Triton's compiler, the launcher it builds with the host C compiler and
  ``Python.h``, a launch, a refused check) or a difference beyond the CPU tests' tolerances
  gives one ``TritonFallbackWarning`` naming the reason and the variant, and from then on that
  variant runs torch's kernels for the rest of the process: its results are exactly the torch
  path's.
* ``on``: Triton without the comparisons; a refused check or any error propagates.

The comparison costs one torch GN forward or backward per variant and phase, once per process.
Tolerances are the CPU tests' (``tests/layers``, against float64) doubled, since two kernels
each within a tolerance of the exact values are within twice it of each other.
"""

import logging
import threading
import warnings
from typing import Dict, List, Optional

import torch

from .group_norm_act_backends import TORCH_BACKEND
from .triton_launch import SUPPORTED_DTYPES, TRITON_BACKEND, dense
from .triton_mode import ENV_VAR, MODES, TritonFallbackWarning, triton_mode

__all__ = [
    "ENV_VAR", "MODES", "triton_mode", "TritonFallbackWarning", "CheckedTritonBackend", "CHECKED_TRITON",
    "TRITON_BACKEND", "SUPPORTED_DTYPES",
]

_logger = logging.getLogger(__name__)


# The CPU tests' tolerances: (rtol, atol as a fraction of the reference's largest magnitude).
_FLOAT32 = {"output": (1e-4, 1e-5), "gradient": (1e-4, 2e-6)}
_HALF = {torch.float16: (4e-3, 4e-3), torch.bfloat16: (2e-2, 2e-2)}


def _difference(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, kind: str) -> Optional[str]:
    """None if ``got`` is within twice the CPU tests' tolerance of ``want``, else what differs."""
    rtol, atol = _HALF.get(dtype) or _FLOAT32[kind]
    got, want = got.float(), want.float()
    atol = 2 * atol * torch.nan_to_num(want.abs(), 0.0, 0.0, 0.0).max().item()
    close = torch.isclose(got, want, rtol=2 * rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return None
    worst = torch.nan_to_num((got - want).abs(), float("inf"), float("inf"), float("inf")).max().item()
    return (
        f"{name} differs from torch's by up to {worst:.3g} at {int((~close).sum())} of {close.numel()} "
        f"elements (tolerance: rtol {2 * rtol:g}, atol {atol:.3g})"
    )


class _Mismatch(Exception):
    pass


class CheckedTritonBackend:
    """The Triton backend in ``checked`` mode (see the module docstring): same interface as
    ``TritonGroupNormBackend``, falling back per variant to ``TORCH_BACKEND``."""

    name = "triton-checked"
    caches_output = False

    def __init__(self, triton_backend=TRITON_BACKEND, torch_backend=TORCH_BACKEND):
        self.triton = triton_backend
        self.torch = torch_backend
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every verdict (tests; a new process starts empty)."""
        with self._lock:
            self._passed: Dict[tuple, set] = {}
            self._failed: Dict[tuple, str] = {}
            self._descriptions: Dict[tuple, str] = {}
            self._warned: set = set()

    # -- variants -------------------------------------------------------------------------
    def variant(self, x: torch.Tensor, weight: torch.Tensor, num_groups: int, relu: bool) -> tuple:
        """The key of this call's kernel variant (see the module docstring)."""
        plan = self.triton.plan(dense(x), num_groups)  # cached per shape, layout, dtype, alignment
        key = (x.device, x.dtype, plan.channels_last, relu, weight.dtype, plan.shape_class())
        if key not in self._descriptions:
            layout = "channels-last" if plan.channels_last else "NCHW"
            self._descriptions[key] = (
                f"GroupNorm{'+ReLU' if relu else ''} on {x.device}, {str(x.dtype).replace('torch.', '')}, "
                f"{layout} ({plan.describe()}; first met at shape {tuple(x.shape)})"
            )
        return key

    def fell_back(self, x, weight, num_groups, relu) -> Optional[str]:
        """Why this call's variant runs torch's kernels, or None if it runs Triton."""
        return self._failed.get(self.variant(x, weight, num_groups, relu))

    def verdicts(self) -> List[Dict[str, object]]:
        """Every variant met so far: ``verified`` phases, or ``fell back`` with the reason."""
        with self._lock:
            return [
                {
                    "variant": self._descriptions[key],
                    "status": "fell back" if key in self._failed else "verified",
                    "phases": sorted(self._passed.get(key, ())),
                    "reason": self._failed.get(key, ""),
                }
                for key in self._descriptions
            ]

    def _to_check(self, key, phase: str, x: torch.Tensor) -> bool:
        return phase not in self._passed.get(key, ())

    def _pass(self, key, phase: str) -> None:
        with self._lock:
            self._passed.setdefault(key, set()).add(phase)

    def _fail(self, key, phase: str, error: Exception) -> None:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = f"{phase}: {detail}" if isinstance(error, _Mismatch) else f"{phase}: {type(error).__name__}: {detail}"
        with self._lock:
            self._failed.setdefault(key, reason)
            # One warning per distinct failure: a missing C compiler fails every variant alike.
            signature = (key,) if isinstance(error, _Mismatch) else (type(error).__name__, detail)
            first = signature not in self._warned
            self._warned.add(signature)
        message = (
            f"gn_det: the Triton kernels of {self._descriptions[key]} failed their check and this "
            f"variant now runs torch's GroupNorm kernels for the rest of the process. Reason: {reason}. "
            f"Set {ENV_VAR}=off to use torch's kernels from the start, or {ENV_VAR}=on to make such "
            "failures errors."
        )
        if first:
            warnings.warn(message, TritonFallbackWarning, stacklevel=4)
        else:
            _logger.info(message)

    def _skip_checks(self, x: torch.Tensor) -> bool:
        # A comparison synchronizes with the host, which a CUDA graph capture forbids: unverified
        # variants run torch's kernels while a capture is under way (no verdict is recorded).
        return x.is_cuda and torch.cuda.is_current_stream_capturing()

    # -- the backend interface ------------------------------------------------------------
    def forward(self, x, weight, bias, num_groups, eps, relu):
        key = self.variant(x, weight, num_groups, relu)
        check = self._to_check(key, "forward", x)
        if key in self._failed or (check and self._skip_checks(x)):
            return self.torch.forward(x, weight, bias, num_groups, eps, relu)
        try:
            y, mean, rstd = self.triton.forward(x, weight, bias, num_groups, eps, relu)
            if check:
                reference = self.torch.forward(x, weight, bias, num_groups, eps, relu)
                problem = _difference("the forward output", y, reference[0], x.dtype, "output")
                if problem:
                    self._fail(key, "forward", _Mismatch(problem))
                    return reference
                self._pass(key, "forward")
            return y, mean, rstd
        except torch.OutOfMemoryError:
            raise  # torch's kernels would need the memory too
        except Exception as error:  # noqa: BLE001 - any Triton failure falls back
            self._fail(key, "forward", error)
            return self.torch.forward(x, weight, bias, num_groups, eps, relu)

    def recompute(self, x, weight, bias, mean, rstd, num_groups, eps, relu):
        key = self.variant(x, weight, num_groups, relu)
        check = self._to_check(key, "recompute", x)
        if key in self._failed or (check and self._skip_checks(x)):
            return self.torch.recompute(x, weight, bias, mean, rstd, num_groups, eps, relu)
        try:
            y = self.triton.recompute(x, weight, bias, mean, rstd, num_groups, eps, relu)
            if check:
                reference = self.torch.recompute(x, weight, bias, mean, rstd, num_groups, eps, relu)
                problem = _difference("the recomputed output", y, reference, x.dtype, "output")
                if problem:
                    self._fail(key, "recompute", _Mismatch(problem))
                    return reference
                self._pass(key, "recompute")
            return y
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # noqa: BLE001
            self._fail(key, "recompute", error)
            return self.torch.recompute(x, weight, bias, mean, rstd, num_groups, eps, relu)

    def backward(self, dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, needs):
        key = self.variant(x, weight, num_groups, relu)
        phase = "backward" if needs[0] else "backward (affine only)"
        check = self._to_check(key, phase, x)
        args = (dy, x, weight, bias, mean, rstd, num_groups, eps, relu)
        if key in self._failed or (check and self._skip_checks(x)):
            return self.torch.backward(*args, None, needs)
        try:
            grads = self.triton.backward(*args, None, needs)
            if check:
                # Torch's gradients with the ReLU mask of Triton's own output: an element within
                # rounding of 0 may fall on either side in two kernels, each side consistent.
                own = self.triton.recompute(x, weight, bias, mean, rstd, num_groups, eps, relu) if relu else None
                reference = self.torch.backward(*args, own, needs)
                for name, got, want in zip(("input", "weight", "bias"), grads, reference):
                    problem = got is not None and _difference(f"the {name} gradient", got, want, x.dtype, "gradient")
                    if problem:
                        raise _Mismatch(problem)
                self._pass(key, phase)
            return grads
        except torch.OutOfMemoryError:
            raise
        except Exception as error:  # noqa: BLE001
            self._fail(key, phase, error)
            # Exactly the torch path's gradients: with torch's statistics, not the forward's.
            _, mean, rstd = self.torch.forward(x, weight, bias, num_groups, eps, relu)
            return self.torch.backward(dy, x, weight, bias, mean, rstd, num_groups, eps, relu, None, needs)


CHECKED_TRITON = CheckedTritonBackend()
