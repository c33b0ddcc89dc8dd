"""Triton kernels for the fused GroupNorm + ReLU/identity (forward, recompute, backward).

A tensor is handled as (N, C, HW) with strides (C*HW, HW, 1) for NCHW or (HW*C, 1, C) for
channels-last; the same kernels serve both (tiles are [BLOCK_C, BLOCK_HW], shaped so that the
unit-stride axis is the long one). Inputs may be float32, float16 or bfloat16; statistics and
arithmetic are float32, outputs have the input's dtype.

Memory traffic (the cost of GN, whose arithmetic is negligible), in full-tensor passes:
  forward:   read x (statistics), read x + write y (normalize, affine and ReLU in one pass)
  recompute: read x + write y, from the saved statistics (for the next layer's backward)
  backward:  read dy, x (per-channel sums), read dy, x + write dx
against torch's GN followed by ReLU: forward 5 passes, backward 8.

Statistics: each program reduces a [BLOCK_C, hw-chunk] slab to per-channel (mean, M2) with
tile-wise Chan/Welford merges (no E[x^2]-E[x]^2 cancellation); a small kernel merges the chunks
and channels of each (sample, group). Splitting HW into chunks keeps the GPU busy when N*C is
small (backbone stages at batch 2).

Correctness runs on CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before this module
is imported); speed needs a GPU (``gn_det.benchmark.layer_timing``).
"""
import triton
import triton.language as tl
import torch

__all__ = ["TRITON_BACKEND", "TritonGroupNormBackend", "layout_of"]


@triton.jit
def _stats_partial_kernel(
    X, PMEAN, PM2,
    C, HW, stride_n, stride_c, stride_hw, hw_per_split, num_splits,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program (n, channel block, hw chunk): per-channel mean and M2 over the chunk.
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    c_mask = c < C
    hw_start = split * hw_per_split
    hw_end = tl.minimum(hw_start + hw_per_split, HW)
    base = X + n.to(tl.int64) * stride_n + c[:, None].to(tl.int64) * stride_c
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(hw_start, hw_end, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        hw_mask = hw < hw_end
        mask = c_mask[:, None] & hw_mask[None, :]
        x = tl.load(base + hw[None, :].to(tl.int64) * stride_hw, mask=mask, other=0.0).to(tl.float32)
        count = (start - hw_start).to(tl.float32)  # elements merged so far
        tile_count = tl.minimum(hw_end - start, BLOCK_HW).to(tl.float32)
        tile_mean = tl.sum(x, axis=1) / tile_count
        centered = tl.where(mask, x - tile_mean[:, None], 0.0)
        tile_m2 = tl.sum(centered * centered, axis=1)
        # Chan et al.'s merge of two (count, mean, M2) summaries.
        new_count = count + tile_count
        delta = tile_mean - mean
        mean = mean + delta * (tile_count / new_count)
        m2 = m2 + tile_m2 + delta * delta * (count * tile_count / new_count)
    out = (n * num_splits + split) * C + c
    tl.store(PMEAN + out, mean, mask=c_mask)
    tl.store(PM2 + out, m2, mask=c_mask)


@triton.jit
def _partial_slots(
    start, n, g, g_mask, C, channels_per_group, HW, hw_per_split, num_splits, BLOCK_P: tl.constexpr
):
    # Partials BLOCK_P at a time, from ``start``: for each group in ``g``, the index of each
    # (chunk, channel) partial, whether it exists, and its pixel count (0 where it does not).
    total = num_splits * channels_per_group
    i = start + tl.arange(0, BLOCK_P)
    split = i // channels_per_group
    valid = g_mask[:, None] & (i < total)[None, :]
    idx = (n * num_splits + split)[None, :] * C + g[:, None] * channels_per_group
    idx += (i % channels_per_group)[None, :]
    p_count = tl.minimum(hw_per_split, HW - split * hw_per_split)[None, :]
    p_count = tl.where(valid, p_count, 0).to(tl.float32)
    return idx, valid, p_count


@triton.jit
def _stats_finalize_kernel(
    PMEAN, PM2, MEAN, RSTD,
    C, G, channels_per_group, HW, hw_per_split, num_splits, inv_group_size, eps,
    BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # Program (n, block of groups): merge each group's (chunk, channel) partials into mean and
    # rstd. Two sweeps over the (small) partials: the group mean, then M2 = sum(M2_i + n_i d_i^2).
    n = tl.program_id(0)
    g = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_mask = g < G
    total = num_splits * channels_per_group
    acc = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    for start in range(0, total, BLOCK_P):
        idx, valid, p_count = _partial_slots(
            start, n, g, g_mask, C, channels_per_group, HW, hw_per_split, num_splits, BLOCK_P
        )
        acc += p_count * tl.load(PMEAN + idx, mask=valid, other=0.0)
    mean = tl.sum(acc, axis=1) * inv_group_size
    acc = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    for start in range(0, total, BLOCK_P):
        idx, valid, p_count = _partial_slots(
            start, n, g, g_mask, C, channels_per_group, HW, hw_per_split, num_splits, BLOCK_P
        )
        d = tl.where(valid, tl.load(PMEAN + idx, mask=valid, other=0.0) - mean[:, None], 0.0)
        acc += tl.load(PM2 + idx, mask=valid, other=0.0) + p_count * d * d
    var = tl.maximum(tl.sum(acc, axis=1) * inv_group_size, 0.0)
    tl.store(MEAN + n * G + g, mean, mask=g_mask)
    tl.store(RSTD + n * G + g, 1.0 / tl.sqrt(var + eps), mask=g_mask)


@triton.jit
def _scale_shift(W, B, MEAN, RSTD, n, c, c_mask, G, channels_per_group):
    # Per-channel y = x * scale + shift, from the (n, group) statistics and the affine.
    stat = n * G + c // channels_per_group
    mean = tl.load(MEAN + stat, mask=c_mask, other=0.0)
    rstd = tl.load(RSTD + stat, mask=c_mask, other=0.0)
    gamma = tl.load(W + c, mask=c_mask, other=0.0).to(tl.float32)
    beta = tl.load(B + c, mask=c_mask, other=0.0).to(tl.float32)
    scale = rstd * gamma
    return mean, rstd, gamma, scale, beta - mean * scale


@triton.jit
def _normalize_act_kernel(
    X, Y, W, B, MEAN, RSTD,
    C, HW, G, channels_per_group, stride_n, stride_c, stride_hw,
    RELU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c_mask = c < C
    mask = c_mask[:, None] & (hw < HW)[None, :]
    _, _, _, scale, shift = _scale_shift(W, B, MEAN, RSTD, n, c, c_mask, G, channels_per_group)
    offs = n.to(tl.int64) * stride_n + c[:, None].to(tl.int64) * stride_c
    offs += hw[None, :].to(tl.int64) * stride_hw
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    y = x * scale[:, None] + shift[:, None]
    if RELU:
        # Not tl.maximum: on GPU its default drops NaN (max(NaN, 0) = 0), which would hide a
        # diverging model from the non-finite-loss checks; torch.relu keeps NaN.
        y = tl.where(y <= 0.0, 0.0, y)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _backward_reduce_kernel(
    DY, X, W, B, MEAN, RSTD, PSUM_DY, PSUM_DY_XHAT,
    C, HW, G, channels_per_group, stride_n, stride_c, stride_hw, hw_per_split, num_splits,
    RELU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program (n, channel block, hw chunk): per-channel sums of g and g * xhat, where g is dy
    # masked by ReLU (the sign of the recomputed pre-activation).
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(2)
    c_mask = c < C
    mean, rstd, _, scale, shift = _scale_shift(W, B, MEAN, RSTD, n, c, c_mask, G, channels_per_group)
    hw_start = split * hw_per_split
    hw_end = tl.minimum(hw_start + hw_per_split, HW)
    row = n.to(tl.int64) * stride_n + c[:, None].to(tl.int64) * stride_c
    sum_g = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_g_xhat = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(hw_start, hw_end, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        mask = c_mask[:, None] & (hw < hw_end)[None, :]
        offs = row + hw[None, :].to(tl.int64) * stride_hw
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        if RELU:
            g = tl.where(x * scale[:, None] + shift[:, None] > 0.0, g, 0.0)
        xhat = (x - mean[:, None]) * rstd[:, None]
        sum_g += tl.sum(g, axis=1)
        sum_g_xhat += tl.sum(g * xhat, axis=1)
    out = (n * num_splits + split) * C + c
    tl.store(PSUM_DY + out, sum_g, mask=c_mask)
    tl.store(PSUM_DY_XHAT + out, sum_g_xhat, mask=c_mask)


@triton.jit
def _backward_finalize_kernel(
    PSUM_DY, PSUM_DY_XHAT, W, RSTD, SUM_DY, SUM_DY_XHAT, COEF1, COEF2,
    C, G, channels_per_group, num_splits, inv_group_size,
    BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # Program (n, block of groups): per-channel sums over chunks (for dgamma, dbeta) and the
    # per-group terms of dx.
    n = tl.program_id(0)
    g = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_mask = g < G
    acc_dy = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    acc_dy_xhat = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    for start in range(0, channels_per_group, BLOCK_P):
        cc = start + tl.arange(0, BLOCK_P)
        valid = g_mask[:, None] & (cc < channels_per_group)[None, :]
        c = g[:, None] * channels_per_group + cc[None, :]
        a = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
        b = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
        for split in range(0, num_splits):
            idx = (n * num_splits + split) * C + c
            a += tl.load(PSUM_DY + idx, mask=valid, other=0.0)
            b += tl.load(PSUM_DY_XHAT + idx, mask=valid, other=0.0)
        tl.store(SUM_DY + n * C + c, a, mask=valid)
        tl.store(SUM_DY_XHAT + n * C + c, b, mask=valid)
        gamma = tl.load(W + c, mask=valid, other=0.0).to(tl.float32)
        acc_dy += gamma * a
        acc_dy_xhat += gamma * b
    rstd = tl.load(RSTD + n * G + g, mask=g_mask, other=0.0)
    tl.store(COEF1 + n * G + g, rstd * tl.sum(acc_dy, axis=1) * inv_group_size, mask=g_mask)
    tl.store(COEF2 + n * G + g, rstd * tl.sum(acc_dy_xhat, axis=1) * inv_group_size, mask=g_mask)


@triton.jit
def _backward_dx_kernel(
    DY, X, DX, W, B, MEAN, RSTD, COEF1, COEF2,
    C, HW, G, channels_per_group, stride_n, stride_c, stride_hw,
    RELU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # dx = rstd * gamma * g - rstd/M * (sum_group(gamma g) + xhat * sum_group(gamma g xhat))
    n = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c_mask = c < C
    mask = c_mask[:, None] & (hw < HW)[None, :]
    mean, rstd, gamma, scale, shift = _scale_shift(W, B, MEAN, RSTD, n, c, c_mask, G, channels_per_group)
    stat = n * G + c // channels_per_group
    coef1 = tl.load(COEF1 + stat, mask=c_mask, other=0.0)
    coef2 = tl.load(COEF2 + stat, mask=c_mask, other=0.0)
    offs = n.to(tl.int64) * stride_n + c[:, None].to(tl.int64) * stride_c
    offs += hw[None, :].to(tl.int64) * stride_hw
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    if RELU:
        g = tl.where(x * scale[:, None] + shift[:, None] > 0.0, g, 0.0)
    xhat = (x - mean[:, None]) * rstd[:, None]
    dx = (rstd * gamma)[:, None] * g - coef1[:, None] - xhat * coef2[:, None]
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------
# Launch logic.
# ---------------------------------------------------------------------------------------------
_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_TILE = 4096  # elements per [BLOCK_C, BLOCK_HW] tile
_TARGET_PROGRAMS = 1024  # enough reduction programs to fill a large GPU several times


def layout_of(x: torch.Tensor):
    """``(memory_format, (stride_n, stride_c, stride_hw))`` of ``x`` seen as (N, C, HW), after
    ``x`` was made NCHW- or channels-last-contiguous."""
    n, c = x.shape[0], x.shape[1]
    hw = x.numel() // max(n * c, 1)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last, (hw * c, 1, c)
    return torch.contiguous_format, (c * hw, hw, 1)


def _dense(x: torch.Tensor) -> torch.Tensor:
    if x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def _blocks(c: int, hw: int, channels_last: bool, tile: int = _TILE):
    """[BLOCK_C, BLOCK_HW] of the streaming kernels: about ``tile`` elements, long along the
    unit-stride axis (C for channels-last, HW for NCHW)."""
    if channels_last:
        block_c = min(triton.next_power_of_2(c), 256, tile)
        block_hw = min(max(tile // block_c, 1), triton.next_power_of_2(hw))
    else:
        block_hw = min(triton.next_power_of_2(hw), 1024, tile)
        block_c = min(max(tile // block_hw, 1), triton.next_power_of_2(c))
    return block_c, block_hw


def _merge_blocks(groups: int, per_group: int):
    """[BLOCK_G, BLOCK_P] of the merge kernels: up to 1024 partials of several groups at once."""
    block_p = min(triton.next_power_of_2(per_group), 1024)
    block_g = min(triton.next_power_of_2(groups), max(1024 // block_p, 1))
    return block_g, block_p


def _splits(n: int, c_blocks: int, hw: int, block_hw: int, num_splits=None):
    """(hw_per_split, num_splits): chunks of HW reduced by separate programs, each a multiple
    of ``block_hw`` long."""
    hw_tiles = triton.cdiv(hw, block_hw)
    if num_splits is None:
        num_splits = triton.cdiv(_TARGET_PROGRAMS, max(n * c_blocks, 1))
    num_splits = max(1, min(num_splits, hw_tiles))
    hw_per_split = triton.cdiv(hw_tiles, num_splits) * block_hw
    return hw_per_split, triton.cdiv(hw, hw_per_split)


class TritonGroupNormBackend:
    """The backend ``group_norm_act`` uses for CUDA tensors (and for CPU tensors under
    ``TRITON_INTERPRET=1``, which is how the tests run it). ``num_splits`` forces the number of
    HW chunks per reduction and ``tile`` the elements per tile (tests shrink both to exercise the
    chunk merge and the tile loops on small shapes)."""

    name = "triton"
    caches_output = False  # backward recomputes the ReLU mask from x, which it reads anyway

    def __init__(self, num_splits=None, tile: int = _TILE, num_warps: int = 4):
        self.num_splits = num_splits
        self.tile = tile
        self.num_warps = num_warps

    @staticmethod
    def _check(x: torch.Tensor):
        if x.dtype not in _SUPPORTED_DTYPES:
            raise TypeError(
                f"Triton GroupNorm: input dtype {x.dtype} is not supported; use float32, float16 or "
                "bfloat16 (float64 runs on the torch backend: backend='torch')."
            )

    def _geometry(self, x):
        n, c = x.shape[0], x.shape[1]
        hw = x.numel() // (n * c)
        fmt, strides = layout_of(x)
        block_c, block_hw = _blocks(c, hw, fmt is torch.channels_last, self.tile)
        return n, c, hw, fmt, strides, block_c, block_hw

    def forward(self, x, weight, bias, num_groups, eps, relu):
        self._check(x)
        x = _dense(x)
        n, c, hw, fmt, strides, block_c, block_hw = self._geometry(x)
        c_blocks = triton.cdiv(c, block_c)
        hw_per_split, num_splits = _splits(n, c_blocks, hw, block_hw, self.num_splits)
        f32 = dict(device=x.device, dtype=torch.float32)
        partial_mean = torch.empty(n, num_splits, c, **f32)
        partial_m2 = torch.empty(n, num_splits, c, **f32)
        _stats_partial_kernel[(n, c_blocks, num_splits)](
            x, partial_mean, partial_m2, c, hw, *strides, hw_per_split, num_splits,
            BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=self.num_warps,
        )
        mean = torch.empty(n, num_groups, **f32)
        rstd = torch.empty(n, num_groups, **f32)
        cpg = c // num_groups
        block_g, block_p = _merge_blocks(num_groups, num_splits * cpg)
        _stats_finalize_kernel[(n, triton.cdiv(num_groups, block_g))](
            partial_mean, partial_m2, mean, rstd, c, num_groups, cpg, hw, hw_per_split, num_splits,
            1.0 / (cpg * hw), eps, BLOCK_G=block_g, BLOCK_P=block_p,
        )
        y = self._normalize(x, weight, bias, mean, rstd, num_groups, relu)
        return y, mean, rstd

    def _normalize(self, x, weight, bias, mean, rstd, num_groups, relu):
        n, c, hw, fmt, strides, block_c, block_hw = self._geometry(x)
        y = torch.empty(x.shape, device=x.device, dtype=x.dtype, memory_format=fmt)
        grid = (n, triton.cdiv(c, block_c), triton.cdiv(hw, block_hw))
        _normalize_act_kernel[grid](
            x, y, weight, bias, mean, rstd, c, hw, num_groups, c // num_groups, *strides,
            RELU=relu, BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=self.num_warps,
        )
        return y

    def recompute(self, x, weight, bias, mean, rstd, num_groups, eps, relu):
        self._check(x)
        return self._normalize(_dense(x), weight, bias, mean, rstd, num_groups, relu)

    def backward(self, dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, needs):
        x = _dense(x)
        n, c, hw, fmt, strides, block_c, block_hw = self._geometry(x)
        dy = dy.contiguous(memory_format=fmt)
        c_blocks = triton.cdiv(c, block_c)
        hw_per_split, num_splits = _splits(n, c_blocks, hw, block_hw, self.num_splits)
        cpg = c // num_groups
        f32 = dict(device=x.device, dtype=torch.float32)
        partial_dy = torch.empty(n, num_splits, c, **f32)
        partial_dy_xhat = torch.empty(n, num_splits, c, **f32)
        _backward_reduce_kernel[(n, c_blocks, num_splits)](
            dy, x, weight, bias, mean, rstd, partial_dy, partial_dy_xhat,
            c, hw, num_groups, cpg, *strides, hw_per_split, num_splits,
            RELU=relu, BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=self.num_warps,
        )
        sum_dy = torch.empty(n, c, **f32)
        sum_dy_xhat = torch.empty(n, c, **f32)
        coef1 = torch.empty(n, num_groups, **f32)
        coef2 = torch.empty(n, num_groups, **f32)
        block_g, block_p = _merge_blocks(num_groups, cpg)
        _backward_finalize_kernel[(n, triton.cdiv(num_groups, block_g))](
            partial_dy, partial_dy_xhat, weight, rstd, sum_dy, sum_dy_xhat, coef1, coef2,
            c, num_groups, cpg, num_splits, 1.0 / (cpg * hw), BLOCK_G=block_g, BLOCK_P=block_p,
        )
        dx = None
        if needs[0]:
            dx = torch.empty(x.shape, device=x.device, dtype=x.dtype, memory_format=fmt)
            grid = (n, c_blocks, triton.cdiv(hw, block_hw))
            _backward_dx_kernel[grid](
                dy, x, dx, weight, bias, mean, rstd, coef1, coef2,
                c, hw, num_groups, cpg, *strides,
                RELU=relu, BLOCK_C=block_c, BLOCK_HW=block_hw, num_warps=self.num_warps,
            )
        dw = sum_dy_xhat.sum(0).to(weight.dtype) if needs[1] else None
        db = sum_dy.sum(0).to(bias.dtype) if needs[2] else None
        return dx, dw, db


TRITON_BACKEND = TritonGroupNormBackend()
