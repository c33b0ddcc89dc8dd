"""Triton kernels of the fused GroupNorm + ReLU/identity: forward, recompute, backward.

A tensor is seen as (N, C, HW), NCHW (strides C*HW, HW, 1) or channels-last (HW*C, 1, C);
``CHANNELS_LAST`` picks the offsets, and tiles are [channels, positions] either way (Triton
makes the unit-stride axis the fast one). Inputs are float32, float16 or bfloat16; statistics
and arithmetic are float32; outputs have the input's dtype. Launch geometry, the checks made
before each launch and the device guard are in ``triton_launch.py``.

Two shapes of work (``triton_launch.Plan`` picks one per layer):

* **Whole groups** (a (sample, group) of at most 4096 elements: the box and mask heads, the
  smallest FPN level): one program per (sample, group) holds the group in registers.
  Forward is one launch (statistics, normalize, affine, ReLU); backward is one launch (the
  group's sums, dx, and per-channel sums for the affine gradients).
* **Split groups** (everything larger): HW is split into chunks reduced by separate programs,
  so that 1-2 images still fill the GPU. Forward: per-chunk statistics, a merge per group, a
  normalize pass. Backward: per-chunk sums, a merge per group, a dx pass.

Memory traffic in full-tensor passes: forward reads x twice and writes y once (whole groups:
once and once); backward reads dy and x twice and writes dx (whole groups: once each); against
torch's GN then ReLU: forward 5, backward 8.

Compile-time hints: integer arguments are not specialized on their values (fewer compiled
variants), so alignment is stated by ``VEC`` instead: the unit-stride row length (HW, or C for
channels-last) is written as ``(n // VEC) * VEC``, which tells the compiler rows start VEC-aligned
and lets it emit vector loads; the launcher checks that VEC divides it. ``INT64`` switches
element offsets to 64 bits for tensors of 2^31 elements or more.
"""
import triton
import triton.language as tl

__all__ = [
    "group_forward_kernel",
    "group_backward_kernel",
    "stats_partial_kernel",
    "stats_finalize_kernel",
    "normalize_act_kernel",
    "backward_reduce_kernel",
    "backward_finalize_kernel",
    "backward_dx_kernel",
]

# Integer arguments whose values must not create compiled variants.
_SIZES = ["C", "HW", "G", "cpg", "hw_blocks", "g_blocks", "tiles_per_split", "num_splits"]


def _jit(fn):
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    return triton.jit(do_not_specialize=[n for n in _SIZES if n in names])(fn)


@triton.jit
def _aligned(C, HW, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr):
    # (C, HW) unchanged in value, with the unit-stride row length (C for channels-last, HW for
    # NCHW) written as a multiple of VEC (the launcher checked that VEC divides it): every mask
    # and loop bound built from them then lets the compiler keep VEC-wide vector accesses.
    if CHANNELS_LAST:
        C = (C // VEC) * VEC
    else:
        HW = (HW // VEC) * VEC
    return C, HW


@triton.jit
def _tile(n, c, c_mask, hw, C, HW, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr):
    # Offsets and mask of the [channels, positions] tile x[n, c, hw] (C, HW from ``_aligned``).
    mask = c_mask[:, None] & (hw < HW)[None, :]
    if INT64:
        n = n.to(tl.int64)
        c = c.to(tl.int64)
        hw = hw.to(tl.int64)
    if CHANNELS_LAST:
        offs = n * HW * C + hw[None, :] * C + c[:, None]
    else:
        offs = n * C * HW + c[:, None] * HW + hw[None, :]
    return offs, mask


@triton.jit
def _group_channels(g, cpg, FULL_GROUP: tl.constexpr, BLOCK_CPG: tl.constexpr):
    # Channels of group g and their mask, for one program per (sample, group).
    ch = tl.arange(0, BLOCK_CPG)
    if FULL_GROUP:  # BLOCK_CPG == cpg: the channel mask is all true, and says so to the compiler
        c = g * BLOCK_CPG + ch
        c_mask = ch < BLOCK_CPG
    else:
        c = g * cpg + ch
        c_mask = ch < cpg
    return c, c_mask


@triton.jit
def _affine(W, B, c, c_mask, mean, rstd):
    # Per-channel y = x * scale + shift.
    gamma = tl.load(W + c, mask=c_mask, other=0.0).to(tl.float32)
    beta = tl.load(B + c, mask=c_mask, other=0.0).to(tl.float32)
    scale = rstd * gamma
    return gamma, scale, beta - mean * scale


@triton.jit
def _relu(y):
    # Not tl.maximum: on GPU its default drops NaN (max(NaN, 0) = 0), which would hide a
    # diverging model from the non-finite-loss checks; torch.relu keeps NaN.
    return tl.where(y <= 0.0, 0.0, y)


# ---------------------------------------------------------------------------------------------
# Whole groups: one program per (sample, group).
# ---------------------------------------------------------------------------------------------
@_jit
def group_forward_kernel(
    X, Y, W, B, MEAN, RSTD,
    C, HW, G, cpg, eps,
    HAS_STATS: tl.constexpr, RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr,
    INT64: tl.constexpr, FULL_GROUP: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program n * G + g. HAS_STATS: normalize with the saved MEAN/RSTD (the recompute for the
    # next layer's backward, bit-identical to the forward); else compute and store them.
    C, HW = _aligned(C, HW, CHANNELS_LAST, VEC)
    pid = tl.program_id(0)
    n = pid // G
    g = pid % G
    c, c_mask = _group_channels(g, cpg, FULL_GROUP, BLOCK_CPG)
    offs, mask = _tile(n, c, c_mask, tl.arange(0, BLOCK_HW), C, HW, CHANNELS_LAST, INT64)
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_STATS:
        mean = tl.load(MEAN + pid)
        rstd = tl.load(RSTD + pid)
    else:
        inv_count = 1.0 / (cpg * HW).to(tl.float32)
        mean = tl.sum(tl.sum(x, axis=1), axis=0) * inv_count
        centered = tl.where(mask, x - mean, 0.0)
        var = tl.sum(tl.sum(centered * centered, axis=1), axis=0) * inv_count
        rstd = 1.0 / tl.sqrt(var + eps)
        tl.store(MEAN + pid, mean)
        tl.store(RSTD + pid, rstd)
    _, scale, shift = _affine(W, B, c, c_mask, mean, rstd)
    y = x * scale[:, None] + shift[:, None]
    if RELU:
        y = _relu(y)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@_jit
def group_backward_kernel(
    DY, X, DX, W, B, MEAN, RSTD, SUM_DY, SUM_DY_XHAT,
    C, HW, G, cpg,
    WRITE_DX: tl.constexpr, RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr,
    INT64: tl.constexpr, FULL_GROUP: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program n * G + g: g = dy masked by ReLU (the sign of the recomputed pre-activation),
    # per-channel sums of g and g * xhat (stored per (n, c) for the affine gradients), and
    # dx = rstd * gamma * g - rstd/M * (sum(gamma g) + xhat * sum(gamma g xhat)).
    C, HW = _aligned(C, HW, CHANNELS_LAST, VEC)
    pid = tl.program_id(0)
    n = pid // G
    g = pid % G
    c, c_mask = _group_channels(g, cpg, FULL_GROUP, BLOCK_CPG)
    offs, mask = _tile(n, c, c_mask, tl.arange(0, BLOCK_HW), C, HW, CHANNELS_LAST, INT64)
    mean = tl.load(MEAN + pid)
    rstd = tl.load(RSTD + pid)
    gamma, scale, shift = _affine(W, B, c, c_mask, mean, rstd)
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    if RELU:
        dy = tl.where(x * scale[:, None] + shift[:, None] > 0.0, dy, 0.0)
    xhat = (x - mean) * rstd
    sum_dy = tl.sum(dy, axis=1)
    sum_dy_xhat = tl.sum(dy * xhat, axis=1)
    tl.store(SUM_DY + n * C + c, sum_dy, mask=c_mask)
    tl.store(SUM_DY_XHAT + n * C + c, sum_dy_xhat, mask=c_mask)
    if WRITE_DX:
        inv_count = 1.0 / (cpg * HW).to(tl.float32)
        coef1 = rstd * tl.sum(gamma * sum_dy, axis=0) * inv_count
        coef2 = rstd * tl.sum(gamma * sum_dy_xhat, axis=0) * inv_count
        dx = (rstd * gamma)[:, None] * dy - coef1 - xhat * coef2
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------
# Split groups: per-chunk partials, a merge per group, a streaming pass.
# ---------------------------------------------------------------------------------------------
@_jit
def stats_partial_kernel(
    X, PMEAN, PM2,
    C, HW, tiles_per_split, num_splits,
    CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr, INT64: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program (n * num_splits + chunk, channel block): per-channel mean and M2 over the chunk,
    # merged tile by tile with Chan et al.'s formula (no E[x^2] - E[x]^2 cancellation).
    C, HW = _aligned(C, HW, CHANNELS_LAST, VEC)
    pid = tl.program_id(0)
    n = pid // num_splits
    split = pid % num_splits
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    hw_per_split = tiles_per_split * BLOCK_HW
    hw_start = split * hw_per_split
    hw_end = tl.minimum(hw_start + hw_per_split, HW)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(hw_start, hw_end, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        offs, mask = _tile(n, c, c_mask, hw, C, HW, CHANNELS_LAST, INT64)
        mask = mask & (hw < hw_end)[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        count = (start - hw_start).to(tl.float32)  # elements merged so far
        tile_count = tl.minimum(hw_end - start, BLOCK_HW).to(tl.float32)
        tile_mean = tl.sum(x, axis=1) / tile_count
        centered = tl.where(mask, x - tile_mean[:, None], 0.0)
        tile_m2 = tl.sum(centered * centered, axis=1)
        new_count = count + tile_count
        delta = tile_mean - mean
        mean = mean + delta * (tile_count / new_count)
        m2 = m2 + tile_m2 + delta * delta * (count * tile_count / new_count)
    out = pid * C + c
    tl.store(PMEAN + out, mean, mask=c_mask)
    tl.store(PM2 + out, m2, mask=c_mask)


@triton.jit
def _partial_slots(start, n, g, g_mask, C, cpg, num_splits, BLOCK_P: tl.constexpr):
    # Partials of groups ``g``, BLOCK_P at a time from ``start`` over (chunk, channel in group):
    # their indices into an (N, num_splits, C) array, whether they exist, their chunk and channel.
    i = start + tl.arange(0, BLOCK_P)
    split = i // cpg
    c = g[:, None] * cpg + (i % cpg)[None, :]
    valid = g_mask[:, None] & (i < num_splits * cpg)[None, :]
    return (n * num_splits + split)[None, :] * C + c, valid, split, c


@_jit
def stats_finalize_kernel(
    PMEAN, PM2, MEAN, RSTD,
    C, HW, G, cpg, g_blocks, tiles_per_split, num_splits, eps,
    BLOCK_HW: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # Program n * g_blocks + block: merge each group's (chunk, channel) partials into mean and
    # rstd. Two sweeps over the partials: the group mean, then M2 = sum(M2_i + n_i d_i^2).
    pid = tl.program_id(0)
    n = pid // g_blocks
    g = (pid % g_blocks) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_mask = g < G
    hw_per_split = tiles_per_split * BLOCK_HW
    total = num_splits * cpg
    inv_count = 1.0 / (cpg * HW).to(tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    for start in range(0, total, BLOCK_P):
        idx, valid, split, _ = _partial_slots(start, n, g, g_mask, C, cpg, num_splits, BLOCK_P)
        count = tl.where(valid, tl.minimum(hw_per_split, HW - split * hw_per_split)[None, :], 0)
        acc += count.to(tl.float32) * tl.load(PMEAN + idx, mask=valid, other=0.0)
    mean = tl.sum(acc, axis=1) * inv_count
    acc = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    for start in range(0, total, BLOCK_P):
        idx, valid, split, _ = _partial_slots(start, n, g, g_mask, C, cpg, num_splits, BLOCK_P)
        count = tl.where(valid, tl.minimum(hw_per_split, HW - split * hw_per_split)[None, :], 0)
        d = tl.where(valid, tl.load(PMEAN + idx, mask=valid, other=0.0) - mean[:, None], 0.0)
        acc += tl.load(PM2 + idx, mask=valid, other=0.0) + count.to(tl.float32) * d * d
    var = tl.maximum(tl.sum(acc, axis=1) * inv_count, 0.0)
    tl.store(MEAN + n * G + g, mean, mask=g_mask)
    tl.store(RSTD + n * G + g, 1.0 / tl.sqrt(var + eps), mask=g_mask)


@_jit
def normalize_act_kernel(
    X, Y, W, B, MEAN, RSTD,
    C, HW, G, cpg, hw_blocks,
    RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr, INT64: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program (n * hw_blocks + position block, channel block): y = act(x * scale + shift).
    C, HW = _aligned(C, HW, CHANNELS_LAST, VEC)
    pid = tl.program_id(0)
    n = pid // hw_blocks
    hw = (pid % hw_blocks) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    stat = n * G + c // cpg
    mean = tl.load(MEAN + stat, mask=c_mask, other=0.0)
    rstd = tl.load(RSTD + stat, mask=c_mask, other=0.0)
    _, scale, shift = _affine(W, B, c, c_mask, mean, rstd)
    offs, mask = _tile(n, c, c_mask, hw, C, HW, CHANNELS_LAST, INT64)
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    y = x * scale[:, None] + shift[:, None]
    if RELU:
        y = _relu(y)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@_jit
def backward_reduce_kernel(
    DY, X, W, B, MEAN, RSTD, PSUM_DY, PSUM_DY_XHAT,
    C, HW, G, cpg, tiles_per_split, num_splits,
    RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr, INT64: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program (n * num_splits + chunk, channel block): per-channel sums of g and g * xhat over
    # the chunk, g being dy masked by ReLU.
    C, HW = _aligned(C, HW, CHANNELS_LAST, VEC)
    pid = tl.program_id(0)
    n = pid // num_splits
    split = pid % num_splits
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    stat = n * G + c // cpg
    mean = tl.load(MEAN + stat, mask=c_mask, other=0.0)
    rstd = tl.load(RSTD + stat, mask=c_mask, other=0.0)
    _, scale, shift = _affine(W, B, c, c_mask, mean, rstd)
    hw_per_split = tiles_per_split * BLOCK_HW
    hw_start = split * hw_per_split
    hw_end = tl.minimum(hw_start + hw_per_split, HW)
    sum_dy = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_dy_xhat = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(hw_start, hw_end, BLOCK_HW):
        hw = start + tl.arange(0, BLOCK_HW)
        offs, mask = _tile(n, c, c_mask, hw, C, HW, CHANNELS_LAST, INT64)
        mask = mask & (hw < hw_end)[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        if RELU:
            dy = tl.where(x * scale[:, None] + shift[:, None] > 0.0, dy, 0.0)
        xhat = (x - mean[:, None]) * rstd[:, None]
        sum_dy += tl.sum(dy, axis=1)
        sum_dy_xhat += tl.sum(dy * xhat, axis=1)
    out = pid * C + c
    tl.store(PSUM_DY + out, sum_dy, mask=c_mask)
    tl.store(PSUM_DY_XHAT + out, sum_dy_xhat, mask=c_mask)


@_jit
def backward_finalize_kernel(
    PSUM_DY, PSUM_DY_XHAT, W, RSTD, COEF1, COEF2,
    C, HW, G, cpg, g_blocks, num_splits,
    BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # Program n * g_blocks + block: each group's dx terms rstd/M * sum(gamma * partial) over its
    # (chunk, channel) partials, BLOCK_P at a time: every program's loop is as short as the
    # forward merge's, whatever the number of chunks.
    pid = tl.program_id(0)
    n = pid // g_blocks
    g = (pid % g_blocks) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_mask = g < G
    acc_dy = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    acc_dy_xhat = tl.zeros([BLOCK_G, BLOCK_P], dtype=tl.float32)
    for start in range(0, num_splits * cpg, BLOCK_P):
        idx, valid, _, c = _partial_slots(start, n, g, g_mask, C, cpg, num_splits, BLOCK_P)
        gamma = tl.load(W + c, mask=valid, other=0.0).to(tl.float32)
        acc_dy += gamma * tl.load(PSUM_DY + idx, mask=valid, other=0.0)
        acc_dy_xhat += gamma * tl.load(PSUM_DY_XHAT + idx, mask=valid, other=0.0)
    rstd = tl.load(RSTD + n * G + g, mask=g_mask, other=0.0)
    inv_count = 1.0 / (cpg * HW).to(tl.float32)
    tl.store(COEF1 + n * G + g, rstd * tl.sum(acc_dy, axis=1) * inv_count, mask=g_mask)
    tl.store(COEF2 + n * G + g, rstd * tl.sum(acc_dy_xhat, axis=1) * inv_count, mask=g_mask)


@_jit
def backward_dx_kernel(
    DY, X, DX, W, B, MEAN, RSTD, COEF1, COEF2,
    C, HW, G, cpg, hw_blocks,
    RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr, INT64: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # Program (n * hw_blocks + position block, channel block):
    # dx = rstd * gamma * g - coef1 - xhat * coef2.
    C, HW = _aligned(C, HW, CHANNELS_LAST, VEC)
    pid = tl.program_id(0)
    n = pid // hw_blocks
    hw = (pid % hw_blocks) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    stat = n * G + c // cpg
    mean = tl.load(MEAN + stat, mask=c_mask, other=0.0)
    rstd = tl.load(RSTD + stat, mask=c_mask, other=0.0)
    coef1 = tl.load(COEF1 + stat, mask=c_mask, other=0.0)
    coef2 = tl.load(COEF2 + stat, mask=c_mask, other=0.0)
    gamma, scale, shift = _affine(W, B, c, c_mask, mean, rstd)
    offs, mask = _tile(n, c, c_mask, hw, C, HW, CHANNELS_LAST, INT64)
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    if RELU:
        dy = tl.where(x * scale[:, None] + shift[:, None] > 0.0, dy, 0.0)
    xhat = (x - mean[:, None]) * rstd[:, None]
    dx = (rstd * gamma)[:, None] * dy - coef1[:, None] - xhat * coef2[:, None]
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
