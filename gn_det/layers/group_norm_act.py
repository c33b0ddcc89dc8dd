"""Fused GroupNorm + activation (ReLU or identity) that keeps only GN's input and statistics.

``GroupNorm`` followed by ``ReLU`` normally keeps two full tensors for backward: GN's input and
ReLU's output (which the next conv also keeps for its weight gradient). ``GroupNormActFunction``
keeps GN's input and the per-(sample, group) mean and rstd only, and recomputes what backward
needs elementwise. Its output carries a ``GroupNormActState`` so that, inside a recompute scope
(``gn_det.layers.recompute``), a consumer that saves the output (the next conv, a max-pool, a
linear layer) stores that small recipe instead of the tensor.

Which kernels run is decided in one place, ``choose_backend``, which also says why:
torch's own (``group_norm_act_backends.TORCH_BACKEND``, the reference and every fallback),
gn_det's C++ CPU kernels (``CPU_BACKEND``), or the Triton kernels (``triton_launch``), which on
CUDA run behind the checks of ``triton_checked`` unless ``GN_DET_TRITON`` says otherwise.
"""

import warnings
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

from .group_norm_act_backends import CPU_BACKEND, TORCH_BACKEND, compute_dtype, cpu_kernels_available, triton_available
from .triton_mode import TritonFallbackWarning, triton_mode

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "GroupNormActFunction",
    "GroupNormActState",
    "choose_backend",
    "group_norm_act",
    "cpu_kernels_available",
    "triton_available",
    "standard_ops_only",
]

ACTIVATIONS = ("relu", "identity")
BACKENDS = ("auto", "torch", "cpu", "triton")

# Attribute of a fused output tensor that holds its recompute recipe (a GroupNormActState).
RECIPE_ATTR = "_gn_det_group_norm_act"


def standard_ops_only() -> bool:
    """Whether the current forward is being recorded for deployment (``torch.jit.trace``,
    ``torch.onnx.export``, ``torch.export``): then the fused op is written as PyTorch's own
    ``group_norm`` (+ ``relu``), so the artifact holds only standard ops and runs without gn_det.
    Eager training and ``torch.compile`` keep the fused kernels; the check costs two flag reads."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def choose_backend(x: torch.Tensor, weight: torch.Tensor, num_groups: int, relu: bool, backend: str = "auto"):
    """``(kernels, why)``: the backend that runs this call and the reason, the one place where
    that is decided. ``backend`` is the caller's request (``group_norm_act``'s argument, a fused
    conv's ``fused_backend``); ``GN_DET_TRITON`` (``triton_checked``) governs every Triton use."""
    if backend not in BACKENDS:
        raise ValueError(f"group_norm_act: backend={backend!r}; valid: {', '.join(BACKENDS)}.")
    if backend == "torch":
        return TORCH_BACKEND, "backend='torch' was asked for"
    if backend == "cpu":
        CPU_BACKEND.require(x)
        return CPU_BACKEND, "backend='cpu' was asked for"
    if backend == "auto" and not x.is_cuda:
        if x.device.type == "cpu" and CPU_BACKEND.supports(x) and cpu_kernels_available():
            return CPU_BACKEND, "a contiguous float32/float64 CPU tensor, and gn_det._C is built"
        return TORCH_BACKEND, "not a CUDA tensor, and not one gn_det's C++ CPU kernels take"
    # A CUDA tensor, or backend="triton" (CPU tensors too, under TRITON_INTERPRET=1).
    mode = triton_mode()
    if mode == "off":
        return TORCH_BACKEND, "GN_DET_TRITON=off"
    if not triton_available():
        if backend == "triton":
            raise RuntimeError("group_norm_act: backend='triton' was asked for but triton does not import.")
        return TORCH_BACKEND, "triton does not import"
    try:
        from . import triton_checked  # imported on first use: CPU-only runs never need triton
    except Exception as error:  # noqa: BLE001 - a triton that imports but cannot build gn_det's kernels
        if mode == "on":
            raise
        return TORCH_BACKEND, _kernels_unusable(error)
    if x.dtype not in triton_checked.SUPPORTED_DTYPES:
        if mode == "on" and backend == "triton":
            raise TypeError(
                f"group_norm_act: backend='triton' with GN_DET_TRITON=on takes float32, float16 or "
                f"bfloat16 inputs, got {x.dtype}; {x.dtype} runs on the torch backend (backend='torch')."
            )
        return TORCH_BACKEND, f"{x.dtype}: the Triton kernels take float32, float16 and bfloat16"
    if mode == "on":
        return triton_checked.TRITON_BACKEND, "GN_DET_TRITON=on: Triton, unchecked"
    fell_back = triton_checked.CHECKED_TRITON.fell_back(x, weight, num_groups, relu)
    if fell_back:
        return TORCH_BACKEND, f"this Triton variant failed its check ({fell_back})"
    return triton_checked.CHECKED_TRITON, "GN_DET_TRITON=checked (the default): Triton, checked once per variant"


_UNUSABLE = []


def _kernels_unusable(error: Exception) -> str:
    reason = f"gn_det's Triton kernels do not load ({type(error).__name__}: {error})"
    if not _UNUSABLE:
        _UNUSABLE.append(reason)
        warnings.warn(
            f"gn_det: {reason}; CUDA tensors run torch's GroupNorm kernels for the rest of the process. "
            "Set GN_DET_TRITON=off to skip Triton, or GN_DET_TRITON=on to make this an error.",
            TritonFallbackWarning, stacklevel=4,
        )
    return reason


# ---------------------------------------------------------------------------------------------
# The recipe carried by a fused output, and the autograd Function.
# ---------------------------------------------------------------------------------------------
class _Handoff:
    """The output recomputed for the next layer's backward, handed to the fused op's own
    backward (which runs next) so the torch backend does not normalize a third time."""

    __slots__ = ("output",)

    def __init__(self):
        self.output = None


class GroupNormActState:
    """Everything needed to recompute ``act(GN(x))``: references to GN's input, affine and
    statistics (tensors that the fused op's backward keeps anyway, so holding them costs nothing).

    A consumer that saves the fused output stores this instead of the tensor; ``recompute()``
    returns a tensor equal to that output (same values, sizes and strides). Only the output
    tensor and such consumers reference it, never the autograd node, so GN's input is freed as
    soon as the node's backward has run, as with ``nn.GroupNorm``.
    """

    __slots__ = (
        "backend",
        "num_groups",
        "eps",
        "relu",
        "x",
        "weight",
        "bias",
        "mean",
        "rstd",
        "_input_versions",
        "output_version",
        "output_size",
        "output_stride",
        "handoff",
    )

    def __init__(self, backend, num_groups: int, eps: float, relu: bool):
        self.backend = backend
        self.num_groups = num_groups
        self.eps = eps
        self.relu = relu
        self.handoff = _Handoff()

    def bind(self, x, weight, bias, mean, rstd):
        self.x, self.weight, self.bias, self.mean, self.rstd = x, weight, bias, mean, rstd
        self._input_versions = (x._version, weight._version, bias._version)

    def bind_output(self, y: torch.Tensor):
        self.output_version = y._version
        self.output_size = y.size()
        self.output_stride = y.stride()

    def describes(self, t: torch.Tensor) -> bool:
        """True while ``t`` (the output this recipe was made for) still holds its forward values."""
        return t._version == self.output_version

    def recompute(self) -> torch.Tensor:
        versions = (self.x._version, self.weight._version, self.bias._version)
        if versions != self._input_versions:
            raise RuntimeError(
                "gn_det fused GroupNorm+activation: its input, weight or bias was modified in place "
                "after the forward pass (versions "
                f"{self._input_versions} -> {versions}), so its output cannot be recomputed for "
                "backward. Do not modify them in place before backward, or set MODEL.GN.FUSED False."
            )
        with torch.no_grad():
            y = self.backend.recompute(
                self.x, self.weight, self.bias, self.mean, self.rstd, self.num_groups, self.eps, self.relu
            )
        if y.stride() != self.output_stride:  # keep the forward's layout (views rely on it)
            y = torch.empty_strided(
                self.output_size, self.output_stride, dtype=y.dtype, device=y.device
            ).copy_(y)
        if self.backend.caches_output:
            self.handoff.output = y
        return y


class GroupNormActFunction(torch.autograd.Function):
    """``act(group_norm(x))`` saving only ``x``, the affine and the (N, G) mean and rstd.

    Use ``group_norm_act`` rather than calling ``apply`` directly: it validates arguments,
    picks the backend and skips autograd when nothing needs a gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, state: GroupNormActState):
        y, mean, rstd = state.backend.forward(x, weight, bias, state.num_groups, state.eps, state.relu)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        # Not the state itself: that would keep x alive as long as the graph object exists.
        ctx.options = (state.backend, state.num_groups, state.eps, state.relu)
        ctx.handoff = state.handoff
        state.bind(x, weight, bias, mean, rstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        backend, num_groups, eps, relu = ctx.options
        output, ctx.handoff.output = ctx.handoff.output, None
        dx, dw, db = backend.backward(
            dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, ctx.needs_input_grad[:3]
        )
        return dx, dw, db, None


def _check(x: torch.Tensor, weight, bias, num_groups: int, activation: str, backend: str, where: str):
    if backend not in BACKENDS:
        raise ValueError(f"group_norm_act{where}: backend={backend!r}; valid: {', '.join(BACKENDS)}.")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"group_norm_act{where}: activation={activation!r}; valid: {', '.join(ACTIVATIONS)}."
        )
    if x.dim() < 2:
        raise ValueError(f"group_norm_act{where}: input must be (N, C, *), got shape {tuple(x.shape)}.")
    c = x.shape[1]
    if num_groups <= 0 or c % num_groups != 0:
        raise ValueError(
            f"group_norm_act{where}: num_groups={num_groups} does not divide the input's "
            f"{c} channels (input shape {tuple(x.shape)})."
        )
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ValueError(
                f"group_norm_act{where}: {name} has shape {tuple(p.shape)}, expected ({c},) for an "
                f"input with {c} channels."
            )


def group_norm_act(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    num_groups: int,
    eps: float = 1e-5,
    activation: str = "relu",
    backend: str = "auto",
    where: str = "",
) -> torch.Tensor:
    """``activation(F.group_norm(x, num_groups, weight, bias, eps))`` with GN's memory footprint.

    Args:
        x: (N, C, *) input; NCHW or channels-last. float32/float64, or float16/bfloat16
            (statistics in float32; the output has ``x``'s dtype, also under autocast, so the
            next conv saves it without a cast and the recompute recipe applies).
        weight, bias: (C,) affine, or None (then 1 and 0).
        num_groups: G, a divisor of C.
        activation: ``"relu"`` or ``"identity"``.
        backend: ``"auto"`` (CUDA tensors: Triton as ``GN_DET_TRITON`` says, checked by
            default; contiguous float32/float64 CPU tensors: gn_det's C++ kernels when built;
            else torch), ``"torch"``, ``"cpu"`` or ``"triton"``. ``choose_backend`` decides.
        where: a layer name for error messages.

    Returns:
        (N, C, *) tensor with ``x``'s dtype and layout. When autograd records it, it carries the
        recompute recipe that ``gn_det.layers.recompute`` scopes use.
    """
    if standard_ops_only():  # F.group_norm checks its arguments itself
        y = torch.nn.functional.group_norm(x, num_groups, weight, bias, eps)
        return torch.relu(y) if activation == "relu" else y
    where = f" in {where}" if where else ""
    _check(x, weight, bias, num_groups, activation, backend, where)
    c = x.shape[1]
    # Without an affine, ones/zeros of the statistics' dtype keep one code path.
    w = weight if weight is not None else torch.ones(c, device=x.device, dtype=compute_dtype(x))
    b = bias if bias is not None else torch.zeros(c, device=x.device, dtype=compute_dtype(x))
    relu = activation == "relu"

    if x.numel() == 0:
        # 0 RoIs: nothing to normalize; keep autograd connected so gamma/beta get zero grads.
        y = torch.nn.functional.group_norm(x, num_groups, w.to(x.dtype), b.to(x.dtype), eps)
        return torch.relu(y) if relu else y
    chosen, _ = choose_backend(x, w, num_groups, relu, backend)

    needs_grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or b.requires_grad)
    if not needs_grad:  # inference: nothing to save
        return chosen.forward(x, w, b, num_groups, eps, relu)[0]

    state = GroupNormActState(chosen, num_groups, eps, relu)
    y = GroupNormActFunction.apply(x, w, b, state)
    state.bind_output(y)
    setattr(y, RECIPE_ATTR, state)
    return y
