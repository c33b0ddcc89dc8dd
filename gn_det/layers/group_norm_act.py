"""Fused GroupNorm + activation (ReLU or identity) that keeps only GN's input and statistics.

``GroupNorm`` followed by ``ReLU`` normally keeps two full tensors for backward: GN's input and
ReLU's output (which the next conv also keeps for its weight gradient). ``GroupNormActFunction``
keeps GN's input and the per-(sample, group) mean and rstd only, and recomputes what backward
needs elementwise. Its output carries a ``GroupNormActState`` so that, inside a recompute scope
(``gn_det.layers.recompute``), a consumer that saves the output (the next conv, a max-pool, a
linear layer) stores that small recipe instead of the tensor.

Backends: CUDA tensors use the Triton kernels of ``triton_group_norm`` when triton imports;
contiguous float32/float64 CPU tensors use gn_det's C++ kernels (``gn_det/csrc``, built by
``pip install``) when they are built; everything else (channels-last, half precision, or no
built kernels) uses PyTorch's own group-norm kernels (``native_group_norm`` and its backward),
which stay the reference.
"""

import functools
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "ACTIVATIONS",
    "BACKENDS",
    "GroupNormActFunction",
    "GroupNormActState",
    "group_norm_act",
    "cpu_kernels_available",
    "triton_available",
    "standard_ops_only",
]

ACTIVATIONS = ("relu", "identity")
BACKENDS = ("auto", "torch", "cpu", "triton")

# Attribute of a fused output tensor that holds its recompute recipe (a GroupNormActState).
RECIPE_ATTR = "_gn_det_group_norm_act"


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """Whether triton imports here (the Triton backend also needs CUDA tensors, or the
    interpreter: ``TRITON_INTERPRET=1``)."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken triton install without a driver
        return False
    return True


def _load_cpu_kernels() -> bool:
    try:
        import gn_det._C  # noqa: F401  registers torch.ops.gn_det.*
    except ImportError:
        return False
    if not hasattr(torch.ops.gn_det, "group_norm_act_forward"):
        return False
    _register_fake_kernels()
    return True


def cpu_kernels_available() -> bool:
    """Whether gn_det's C++ CPU kernels (the ``gn_det._C`` extension) are built and load."""
    return _CPU_KERNELS


def _register_fake_kernels():
    # Shapes only, for torch.compile / torch.export's fake tensors.
    def stats(x, num_groups):
        return x.new_empty((x.shape[0], num_groups))

    @torch.library.register_fake("gn_det::group_norm_act_forward")
    def _(x, weight, bias, num_groups, eps, relu):
        return torch.empty_like(x, memory_format=torch.contiguous_format), stats(x, num_groups), stats(x, num_groups)

    @torch.library.register_fake("gn_det::group_norm_act_apply")
    def _(x, weight, bias, mean, rstd, relu):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("gn_det::group_norm_act_backward")
    def _(dy, x, weight, bias, mean, rstd, relu, out, needs):
        dx = torch.empty_like(x, memory_format=torch.contiguous_format) if needs[0] else None
        dw = weight.new_empty(weight.shape) if needs[1] else None
        db = bias.new_empty(bias.shape) if needs[2] else None
        return dx, dw, db


def standard_ops_only() -> bool:
    """Whether the current forward is being recorded for deployment (``torch.jit.trace``,
    ``torch.onnx.export``, ``torch.export``): then the fused op is written as PyTorch's own
    ``group_norm`` (+ ``relu``), so the artifact holds only standard ops and runs without gn_det.
    Eager training and ``torch.compile`` keep the fused kernels; the check costs two flag reads."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


# Loaded at import, not on first use: torch.compile cannot trace the fake-kernel registration.
_CPU_KERNELS = _load_cpu_kernels()


# ---------------------------------------------------------------------------------------------
# PyTorch backend: torch's own group-norm kernels, ReLU applied in place on our own output.
# ---------------------------------------------------------------------------------------------
def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # Statistics and the normalize step run in float32 (float64 stays float64 for gradcheck).
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # ``t.to(dtype)`` costs ~1.5 us even when nothing changes; the fused op makes nine such
    # casts per layer and step, which is measurable against the smallest FPN level's kernels.
    return t if t.dtype == dtype else t.to(dtype)


def _dense_for_torch(x: torch.Tensor) -> torch.Tensor:
    # What torch.group_norm does before native_group_norm: channels-last stays channels-last on CPU.
    if x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.contiguous()


def _sizes(x: torch.Tensor) -> Tuple[int, int, int]:
    n, c = x.shape[0], x.shape[1]
    hw = 1
    for s in x.shape[2:]:
        hw *= s
    return n, c, hw


class _TorchBackend:
    name = "torch"
    # Backward needs the pre-activation sign; the next conv's unpack already recomputed the
    # output, so keep it for the GN backward instead of normalizing a third time.
    caches_output = True

    @staticmethod
    def _prepare(x, weight, bias):
        cdt = _compute_dtype(x)
        return _dense_for_torch(x).to(cdt), weight.to(cdt), bias.to(cdt)

    def forward(self, x, weight, bias, num_groups, eps, relu):
        xc, w, b = self._prepare(x, weight, bias)
        n, c, hw = _sizes(x)
        y, mean, rstd = torch.native_group_norm(xc, w, b, n, c, hw, num_groups, eps)
        if relu:
            y.relu_()  # our own fresh tensor: in place is safe and saves a pass
        return y.to(x.dtype), mean, rstd

    def recompute(self, x, weight, bias, mean, rstd, num_groups, eps, relu):
        # native_group_norm is deterministic: this reproduces the forward output bit for bit
        # (it also recomputes the statistics, which on CPU is cheaper than a broadcast affine).
        return self.forward(x, weight, bias, num_groups, eps, relu)[0]

    def backward(self, dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, needs):
        xc, w, b = self._prepare(x, weight, bias)
        n, c, hw = _sizes(x)
        memory_format = (
            torch.channels_last
            if xc.dim() == 4
            and not xc.is_contiguous()
            and xc.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        g = dy.to(xc.dtype).contiguous(memory_format=memory_format)
        if relu:
            if output is None:
                output = torch.native_group_norm(xc, w, b, n, c, hw, num_groups, eps)[0]
            # ReLU's gradient: pass where the pre-activation (equivalently the output) is > 0.
            # ``output`` is a private recomputed tensor: write the masked gradient over it rather
            # than allocating another full tensor during backward.
            if output.dtype == g.dtype and output.stride() == g.stride():
                g = torch.ops.aten.threshold_backward.grad_input(g, output, 0, grad_input=output)
            else:
                g = torch.ops.aten.threshold_backward(g, output.to(g.dtype), 0)
            output = None
        dx, dw, db = torch.ops.aten.native_group_norm_backward(
            g, xc, mean, rstd, w, n, c, hw, num_groups, list(needs)
        )
        return (
            dx.to(x.dtype) if dx is not None else None,
            dw.to(weight.dtype) if dw is not None else None,
            db.to(bias.dtype) if db is not None else None,
        )


_TORCH_BACKEND = _TorchBackend()


# ---------------------------------------------------------------------------------------------
# CPU backend: gn_det's C++ kernels (gn_det/csrc/group_norm_act_cpu.cpp). Each (sample, group)
# block is normalized while it is in cache, ReLU is folded into the normalize pass, and backward
# recomputes ReLU's mask from x and writes dx over the recomputed output it was handed.
# ---------------------------------------------------------------------------------------------
_CPU_DTYPES = (torch.float32, torch.float64)


class _CpuKernelBackend:
    name = "cpu"
    # The output recomputed for the next layer's backward is free once that backward has run:
    # dx is written over it instead of into a new tensor.
    caches_output = True

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in _CPU_DTYPES and x.is_contiguous()

    def forward(self, x, weight, bias, num_groups, eps, relu):
        return torch.ops.gn_det.group_norm_act_forward(
            x, _cast(weight, x.dtype), _cast(bias, x.dtype), num_groups, eps, relu
        )

    def recompute(self, x, weight, bias, mean, rstd, num_groups, eps, relu):
        # The forward's own normalize code on the saved statistics: bit-identical output.
        return torch.ops.gn_det.group_norm_act_apply(
            x, _cast(weight, x.dtype), _cast(bias, x.dtype), mean, rstd, relu
        )

    def backward(self, dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, needs):
        if torch.compiler.is_compiling() or (
            output is not None and not (output.dtype == x.dtype and output.is_contiguous())
        ):
            output = None  # compiled graphs functionalize: no writing into a handed-over buffer
        dx, dw, db = torch.ops.gn_det.group_norm_act_backward(
            _cast(dy, x.dtype), x, _cast(weight, x.dtype), _cast(bias, x.dtype), mean, rstd, relu, output,
            list(needs),
        )
        return (
            dx if needs[0] else None,
            _cast(dw, weight.dtype) if needs[1] else None,
            _cast(db, bias.dtype) if needs[2] else None,
        )


_CPU_BACKEND = _CpuKernelBackend()


def _select_backend(x: torch.Tensor, backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"group_norm_act: backend={backend!r}; valid: {', '.join(BACKENDS)}.")
    if backend == "auto" and x.device.type == "cpu":
        return _CPU_BACKEND if _CPU_BACKEND.supports(x) and cpu_kernels_available() else _TORCH_BACKEND
    if backend == "cpu":
        if not cpu_kernels_available():
            raise RuntimeError(
                "group_norm_act: backend='cpu' was asked for but gn_det's CPU kernels are not built "
                "(gn_det._C does not import): reinstall gn_det with `pip install --no-build-isolation "
                "-e .` where a C++ compiler is available, or use backend='torch'."
            )
        if not _CPU_BACKEND.supports(x):
            raise TypeError(
                "group_norm_act: backend='cpu' takes contiguous float32/float64 CPU tensors, got a "
                f"{x.dtype} tensor on {x.device} (contiguous: {x.is_contiguous()}); "
                "use backend='auto' or 'torch' for other inputs."
            )
        return _CPU_BACKEND
    if backend == "torch" or (backend == "auto" and not (x.is_cuda and triton_available())):
        return _TORCH_BACKEND
    if not triton_available():
        raise RuntimeError("group_norm_act: backend='triton' was asked for but triton does not import.")
    from .triton_group_norm import TRITON_BACKEND  # imported lazily: CPU-only runs never need it

    return TRITON_BACKEND


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


def _check(x: torch.Tensor, weight, bias, num_groups: int, activation: str, where: str):
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
        backend: ``"auto"`` (Triton for CUDA tensors when triton imports; gn_det's CPU kernels
            for contiguous float32/float64 CPU tensors when built; else torch), ``"torch"``,
            ``"cpu"`` or ``"triton"``.
        where: a layer name for error messages.

    Returns:
        (N, C, *) tensor with ``x``'s dtype and layout. When autograd records it, it carries the
        recompute recipe that ``gn_det.layers.recompute`` scopes use.
    """
    if standard_ops_only():  # F.group_norm checks its arguments itself
        y = torch.nn.functional.group_norm(x, num_groups, weight, bias, eps)
        return torch.relu(y) if activation == "relu" else y
    where = f" in {where}" if where else ""
    _check(x, weight, bias, num_groups, activation, where)
    chosen = _select_backend(x, backend)
    c = x.shape[1]
    # Without an affine, ones/zeros of the statistics' dtype keep one code path.
    w = weight if weight is not None else torch.ones(c, device=x.device, dtype=_compute_dtype(x))
    b = bias if bias is not None else torch.zeros(c, device=x.device, dtype=_compute_dtype(x))
    relu = activation == "relu"

    if x.numel() == 0:
        # 0 RoIs: nothing to normalize; keep autograd connected so gamma/beta get zero grads.
        y = torch.nn.functional.group_norm(x, num_groups, w.to(x.dtype), b.to(x.dtype), eps)
        return torch.relu(y) if relu else y

    needs_grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or b.requires_grad)
    if not needs_grad:  # inference: nothing to save
        return chosen.forward(x, w, b, num_groups, eps, relu)[0]

    state = GroupNormActState(chosen, num_groups, eps, relu)
    y = GroupNormActFunction.apply(x, w, b, state)
    state.bind_output(y)
    setattr(y, RECIPE_ATTR, state)
    return y
