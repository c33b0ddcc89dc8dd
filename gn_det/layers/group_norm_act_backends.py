"""The two non-Triton backends of ``group_norm_act``: PyTorch's own group-norm kernels (the
reference, and what every fallback runs) and gn_det's C++ CPU kernels (``gn_det/csrc``).

A backend has ``forward(x, weight, bias, G, eps, relu) -> (y, mean, rstd)``,
``recompute(x, weight, bias, mean, rstd, G, eps, relu) -> y`` (the forward output again, for the
next layer's backward) and ``backward(dy, x, weight, bias, mean, rstd, G, eps, relu, output,
needs) -> (dx, dweight, dbias)``; ``caches_output`` says whether backward can use the output
recomputed for the next layer (``output``) instead of normalizing again.
"""

import functools
from typing import Tuple

import torch

__all__ = ["TORCH_BACKEND", "CPU_BACKEND", "cpu_kernels_available", "triton_available", "compute_dtype"]


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


# Loaded at import, not on first use: torch.compile cannot trace the fake-kernel registration.
_CPU_KERNELS = _load_cpu_kernels()


# ---------------------------------------------------------------------------------------------
# PyTorch backend: torch's own group-norm kernels, ReLU applied in place on our own output.
# ---------------------------------------------------------------------------------------------
def compute_dtype(x: torch.Tensor) -> torch.dtype:
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
        cdt = compute_dtype(x)
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


TORCH_BACKEND = _TorchBackend()


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

    def require(self, x: torch.Tensor) -> None:
        """Raise unless these kernels are built and take ``x`` (``backend='cpu'`` was asked for)."""
        if not cpu_kernels_available():
            raise RuntimeError(
                "group_norm_act: backend='cpu' was asked for but gn_det's CPU kernels are not built "
                "(gn_det._C does not import): reinstall gn_det with `pip install --no-build-isolation "
                "-e .` where a C++ compiler is available, or use backend='torch'."
            )
        if not self.supports(x):
            raise TypeError(
                "group_norm_act: backend='cpu' takes contiguous float32/float64 CPU tensors, got a "
                f"{x.dtype} tensor on {x.device} (contiguous: {x.is_contiguous()}); "
                "use backend='auto' or 'torch' for other inputs."
            )

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


CPU_BACKEND = _CpuKernelBackend()
