"""Launching the Triton GN kernels: the plan of a layer's launches, the checks that must pass
before any of them runs, and the device guard.

A CUDA launch that goes wrong cannot be taken back: a grid beyond the hardware's limits fails,
and an out-of-range address or a misaligned vector access leaves the CUDA context broken for the
rest of the process. So ``Plan.check`` verifies, in Python and before the first launch of a
phase, everything such a failure depends on: the device of every tensor, the dtypes, every
grid against CUDA's limits, the width of the element offsets, and the alignment the ``VEC``
hints promise. Each launch then runs under ``torch.cuda.device(x.device)``: Triton launches on
the *current* device, which is not the tensors' one when, say, a model on ``cuda:1`` runs while
device 0 is current (``DefaultPredictor`` with ``MODEL.DEVICE cuda:1``).
"""
import functools
import os
from dataclasses import dataclass
from typing import Tuple

import torch
import triton

from . import triton_group_norm as K

__all__ = ["Plan", "TritonLaunchError", "TritonGroupNormBackend", "TRITON_BACKEND", "SUPPORTED_DTYPES"]

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
GRID_LIMITS = (2**31 - 1, 65535, 65535)  # CUDA's, for axes x, y, z
_INT32_LIMIT = 2**31
_WHOLE_GROUP_MAX = 4096  # elements of a [channels, positions] tile one program keeps in registers
_TILE = 4096  # elements per tile of the split-group kernels
_TARGET_PROGRAMS = 1024  # reduction programs to aim for: several per SM on a large GPU
_MERGE_TILE = 1024  # partials per tile of the merge kernels


class TritonLaunchError(RuntimeError):
    """A Triton GN launch that the checks before it refused; the message says which check."""


def _address(t: torch.Tensor) -> int:
    # meta tensors (the launch emulation) have no memory: taken as aligned, as CUDA allocations are.
    return 0 if t.device.type == "meta" else t.data_ptr()


def _pow2_divisor(n: int, cap: int) -> int:
    vec = 1
    while vec < cap and n % (2 * vec) == 0:
        vec *= 2
    return vec


@dataclass(frozen=True)
class Plan:
    """The launches of one GN layer call: sizes, tiles and grids (see triton_group_norm)."""

    n: int
    c: int
    hw: int
    groups: int
    channels_last: bool
    whole_groups: bool
    block_c: int  # whole groups: channels per group rounded up to a power of 2
    block_hw: int
    num_warps: int
    vec: int
    int64: bool
    tiles_per_split: int = 1
    num_splits: int = 1

    @property
    def cpg(self) -> int:
        return self.c // self.groups

    @property
    def c_blocks(self) -> int:
        return triton.cdiv(self.c, self.block_c)

    @property
    def hw_blocks(self) -> int:
        return triton.cdiv(self.hw, self.block_hw)

    def merge_blocks(self, partials_per_group: int) -> Tuple[int, int]:
        """[BLOCK_G, BLOCK_P] of a merge kernel: up to _MERGE_TILE partials of several groups."""
        block_p = min(triton.next_power_of_2(partials_per_group), _MERGE_TILE)
        block_g = min(triton.next_power_of_2(self.groups), max(_MERGE_TILE // block_p, 1))
        return block_g, block_p

    def tile_constexprs(self):
        return dict(CHANNELS_LAST=self.channels_last, VEC=self.vec, INT64=self.int64)

    def grids(self):
        """Every grid this plan can launch, by kernel name."""
        if self.whole_groups:
            return {"group_forward_kernel": (self.n * self.groups,), "group_backward_kernel": (self.n * self.groups,)}
        merge_g = self.merge_blocks(self.num_splits * self.cpg)[0]
        stream = (self.n * self.hw_blocks, self.c_blocks)
        partial = (self.n * self.num_splits, self.c_blocks)
        merge = (self.n * triton.cdiv(self.groups, merge_g),)
        return {
            "stats_partial_kernel": partial, "stats_finalize_kernel": merge, "normalize_act_kernel": stream,
            "backward_reduce_kernel": partial, "backward_finalize_kernel": merge, "backward_dx_kernel": stream,
        }

    def shape_class(self) -> tuple:
        """What selects the compiled kernel variants (integer sizes do not: they are not
        specialized on), for the checked mode's once-per-variant comparison."""
        merge = () if self.whole_groups else self.merge_blocks(self.num_splits * self.cpg)
        full = self.whole_groups and self.block_c == self.cpg
        return (self.whole_groups, self.block_c, self.block_hw, self.num_warps, self.vec, self.int64, full, merge)

    def describe(self) -> str:
        if self.whole_groups:
            tiles = f"one program per (sample, group), {self.block_c}x{self.block_hw} tile"
        else:
            tiles = f"{self.block_c}x{self.block_hw} tiles, HW in {self.num_splits} chunk(s)"
        return f"{tiles}, {self.num_warps} warps, VEC {self.vec}, {'int64' if self.int64 else 'int32'} offsets"

    def check(self, *tensors: torch.Tensor, vec_tensors: Tuple[torch.Tensor, ...] = ()) -> None:
        """Raise TritonLaunchError unless every launch of this plan is safe to make with these
        tensors (the first one being x): see the module docstring."""
        device = tensors[0].device
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise TritonLaunchError("CPU tensors run the Triton kernels only under TRITON_INTERPRET=1")
        for t in tensors:
            if t.device != device:
                raise TritonLaunchError(f"tensors on {device} and {t.device}")
            if t.dtype not in SUPPORTED_DTYPES:
                raise TritonLaunchError(f"dtype {t.dtype} (the kernels take float32, float16, bfloat16)")
        for name, grid in self.grids().items():
            for axis, (size, limit) in enumerate(zip(grid, GRID_LIMITS)):
                if not 1 <= size <= limit:
                    raise TritonLaunchError(f"{name}: grid axis {axis} would be {size}, outside 1..{limit}")
        numel = self.n * self.c * self.hw
        partials = self.n * self.num_splits * self.c
        if not self.int64 and numel >= _INT32_LIMIT or partials >= _INT32_LIMIT:
            raise TritonLaunchError(f"{numel} elements / {partials} partials overflow the offsets' width")
        row = self.c if self.channels_last else self.hw
        if row % self.vec:
            raise TritonLaunchError(f"VEC={self.vec} does not divide the row length {row}")
        for t in vec_tensors:
            if _address(t) % (self.vec * t.element_size()):
                raise TritonLaunchError(f"a tensor at address {_address(t):#x} is not {self.vec}-element aligned")


def layout_of(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a 4-D channels-last-contiguous (not NCHW-contiguous) tensor, else
    ``contiguous_format``; the kernels need ``x`` dense in that layout (``dense``)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def make_plan(x: torch.Tensor, num_groups: int, tile: int = _TILE, num_splits=None) -> Plan:
    """The plan for a dense ``x`` (see ``dense``). ``tile`` and ``num_splits`` shrink the tiles
    and force HW chunks (tests use them to run every loop on small shapes). Cached: a layer's
    plan depends only on its shape, layout, dtype, groups and the alignment of ``x``'s address."""
    channels_last = layout_of(x) is torch.channels_last
    return _make_plan(tuple(x.shape), x.element_size(), channels_last, num_groups, tile, num_splits,
                      _address(x) % 16)


@functools.lru_cache(maxsize=4096)
def _make_plan(shape, itemsize, channels_last, num_groups, tile, num_splits, address_mod_16) -> Plan:
    n, c = shape[0], shape[1]
    numel = 1
    for size in shape:
        numel *= size
    hw = numel // (n * c) if n * c else 0
    cpg = c // num_groups
    int64 = numel >= _INT32_LIMIT
    # Vector width in elements: up to 16 bytes, dividing the unit-stride rows, x's address aligned.
    vec = _pow2_divisor(c if channels_last else hw, max(16 // itemsize, 1))
    while address_mod_16 % (vec * itemsize):
        vec //= 2
    block_cpg, block_group_hw = triton.next_power_of_2(cpg), triton.next_power_of_2(hw)
    if block_cpg * block_group_hw <= min(_WHOLE_GROUP_MAX, tile):
        # ~16 elements per thread: 1 warp for a 7x7 box-head group (8x64), 8 for 4096.
        warps = max(1, min(8, block_cpg * block_group_hw // 512))
        return Plan(n, c, hw, num_groups, channels_last, True, block_cpg, block_group_hw, warps, vec, int64)
    if channels_last:  # long along C, the unit-stride axis
        block_c = min(triton.next_power_of_2(c), 256, tile)
        block_hw = min(max(tile // block_c, 1), triton.next_power_of_2(hw))
    else:
        block_hw = min(triton.next_power_of_2(hw), 1024, tile)
        block_c = min(max(tile // block_hw, 1), triton.next_power_of_2(c))
    hw_tiles = triton.cdiv(hw, block_hw)
    splits = num_splits or triton.cdiv(_TARGET_PROGRAMS, max(n * triton.cdiv(c, block_c), 1))
    tiles_per_split = triton.cdiv(hw_tiles, max(1, min(splits, hw_tiles)))
    return Plan(
        n, c, hw, num_groups, channels_last, False, block_c, block_hw, 4, vec, int64,
        tiles_per_split, triton.cdiv(hw_tiles, tiles_per_split),
    )


def launch(kernel, grid, device: torch.device, *args, **constexprs) -> None:
    """``kernel[grid](*args, **constexprs)`` on ``device`` (Triton uses the current CUDA device)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            kernel[grid](*args, **constexprs)
    else:
        kernel[grid](*args, **constexprs)


class TritonGroupNormBackend:
    """The Triton kernels behind ``group_norm_act``'s backend interface (forward, recompute,
    backward). It runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (how the
    tests run it). ``tile`` and ``num_splits`` as in ``make_plan``."""

    name = "triton"
    caches_output = False  # backward recomputes the ReLU mask from x, which it reads anyway

    def __init__(self, num_splits=None, tile: int = _TILE):
        self.num_splits = num_splits
        self.tile = tile

    def plan(self, x: torch.Tensor, num_groups: int) -> Plan:
        return make_plan(x, num_groups, self.tile, self.num_splits)

    def forward(self, x, weight, bias, num_groups, eps, relu):
        x = dense(x)
        p = self.plan(x, num_groups)
        p.check(x, weight, bias, vec_tensors=(x,))
        y = torch.empty(x.shape, device=x.device, dtype=x.dtype, memory_format=_format(p))
        stats = torch.empty(2, p.n, num_groups, device=x.device, dtype=torch.float32)
        mean, rstd = stats[0], stats[1]
        if p.whole_groups:
            self._group_forward(p, x, y, weight, bias, mean, rstd, eps, relu, has_stats=False)
            return y, mean, rstd
        partials = torch.empty(2, p.n, p.num_splits, p.c, device=x.device, dtype=torch.float32)
        launch(
            K.stats_partial_kernel, (p.n * p.num_splits, p.c_blocks), x.device,
            x, partials[0], partials[1], p.c, p.hw, p.tiles_per_split, p.num_splits,
            BLOCK_C=p.block_c, BLOCK_HW=p.block_hw, num_warps=p.num_warps, **p.tile_constexprs(),
        )
        block_g, block_p = p.merge_blocks(p.num_splits * p.cpg)
        g_blocks = triton.cdiv(num_groups, block_g)
        launch(
            K.stats_finalize_kernel, (p.n * g_blocks,), x.device,
            partials[0], partials[1], mean, rstd, p.c, p.hw, num_groups, p.cpg, g_blocks,
            p.tiles_per_split, p.num_splits, eps, BLOCK_HW=p.block_hw, BLOCK_G=block_g, BLOCK_P=block_p,
        )
        self._normalize(p, x, y, weight, bias, mean, rstd, relu)
        return y, mean, rstd

    def _group_forward(self, p, x, y, weight, bias, mean, rstd, eps, relu, has_stats):
        launch(
            K.group_forward_kernel, (p.n * p.groups,), x.device,
            x, y, weight, bias, mean, rstd, p.c, p.hw, p.groups, p.cpg, eps,
            HAS_STATS=has_stats, RELU=relu, FULL_GROUP=p.block_c == p.cpg, BLOCK_CPG=p.block_c,
            BLOCK_HW=p.block_hw, num_warps=p.num_warps, **p.tile_constexprs(),
        )

    def _normalize(self, p, x, y, weight, bias, mean, rstd, relu):
        launch(
            K.normalize_act_kernel, (p.n * p.hw_blocks, p.c_blocks), x.device,
            x, y, weight, bias, mean, rstd, p.c, p.hw, p.groups, p.cpg, p.hw_blocks,
            RELU=relu, BLOCK_C=p.block_c, BLOCK_HW=p.block_hw, num_warps=p.num_warps, **p.tile_constexprs(),
        )

    def recompute(self, x, weight, bias, mean, rstd, num_groups, eps, relu):
        x = dense(x)
        p = self.plan(x, num_groups)
        p.check(x, weight, bias, mean, rstd, vec_tensors=(x,))
        y = torch.empty(x.shape, device=x.device, dtype=x.dtype, memory_format=_format(p))
        if p.whole_groups:
            self._group_forward(p, x, y, weight, bias, mean, rstd, eps, relu, has_stats=True)
        else:
            self._normalize(p, x, y, weight, bias, mean, rstd, relu)
        return y

    def backward(self, dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, needs):
        x = dense(x)
        p = self.plan(x, num_groups)
        dy = dy.to(x.dtype).contiguous(memory_format=_format(p))
        if _address(dy) % (p.vec * dy.element_size()):  # a view at an odd offset: realign
            dy = dy.clone(memory_format=_format(p))
        p.check(x, dy, weight, bias, mean, rstd, vec_tensors=(x, dy))
        f32 = dict(device=x.device, dtype=torch.float32)
        dx = torch.empty(x.shape, device=x.device, dtype=x.dtype, memory_format=_format(p)) if needs[0] else None
        if p.whole_groups:
            sums = torch.empty(2, p.n, p.c, **f32)
            launch(
                K.group_backward_kernel, (p.n * p.groups,), x.device,
                dy, x, dx if needs[0] else x, weight, bias, mean, rstd, sums[0], sums[1],
                p.c, p.hw, p.groups, p.cpg,
                WRITE_DX=bool(needs[0]), RELU=relu, FULL_GROUP=p.block_c == p.cpg, BLOCK_CPG=p.block_c,
                BLOCK_HW=p.block_hw, num_warps=p.num_warps, **p.tile_constexprs(),
            )
            affine = sums.sum(1) if needs[1] or needs[2] else None
        else:
            sums = torch.empty(2, p.n, p.num_splits, p.c, **f32)
            launch(
                K.backward_reduce_kernel, (p.n * p.num_splits, p.c_blocks), x.device,
                dy, x, weight, bias, mean, rstd, sums[0], sums[1],
                p.c, p.hw, p.groups, p.cpg, p.tiles_per_split, p.num_splits,
                RELU=relu, BLOCK_C=p.block_c, BLOCK_HW=p.block_hw, num_warps=p.num_warps, **p.tile_constexprs(),
            )
            if needs[0]:
                coef = torch.empty(2, p.n, p.groups, **f32)
                block_g, block_p = p.merge_blocks(p.num_splits * p.cpg)
                g_blocks = triton.cdiv(p.groups, block_g)
                launch(
                    K.backward_finalize_kernel, (p.n * g_blocks,), x.device,
                    sums[0], sums[1], weight, rstd, coef[0], coef[1],
                    p.c, p.hw, p.groups, p.cpg, g_blocks, p.num_splits, BLOCK_G=block_g, BLOCK_P=block_p,
                )
                launch(
                    K.backward_dx_kernel, (p.n * p.hw_blocks, p.c_blocks), x.device,
                    dy, x, dx, weight, bias, mean, rstd, coef[0], coef[1],
                    p.c, p.hw, p.groups, p.cpg, p.hw_blocks,
                    RELU=relu, BLOCK_C=p.block_c, BLOCK_HW=p.block_hw, num_warps=p.num_warps,
                    **p.tile_constexprs(),
                )
            affine = sums.sum((1, 2)) if needs[1] or needs[2] else None
        dw = affine[1].to(weight.dtype) if needs[1] else None
        db = affine[0].to(bias.dtype) if needs[2] else None
        return dx, dw, db


def _format(p: Plan) -> torch.memory_format:
    return torch.channels_last if p.channels_last else torch.contiguous_format


TRITON_BACKEND = TritonGroupNormBackend()
