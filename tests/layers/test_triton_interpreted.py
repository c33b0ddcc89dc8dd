"""The Triton GN(+ReLU) kernels against float64 torch: on CPU under Triton's interpreter
(TRITON_INTERPRET=1), or natively on a GPU (GN_DET_TEST_DEVICE=cuda; benchmarks/gpu/run.sh).

Triton reads TRITON_INTERPRET when it is imported (its own ``tl`` helpers are decorated then)
and at every launch, so on CPU these tests need a process that set the variable before importing
triton: ``test_triton_group_norm.py`` runs this file in such a subprocess, and
``TRITON_INTERPRET=1 pytest tests/layers/test_triton_interpreted.py`` runs it directly. Elsewhere the
module is skipped. Shapes are small: the interpreter runs every program in numpy.
"""

import os

import pytest

DEVICE = os.environ.get("GN_DET_TEST_DEVICE", "cpu")
if os.environ.get("TRITON_INTERPRET") != "1" and DEVICE != "cuda":
    pytest.skip(
        "needs TRITON_INTERPRET=1 before triton is imported (test_triton_group_norm.py runs it "
        "in such a subprocess), or GN_DET_TEST_DEVICE=cuda on a GPU",
        allow_module_level=True,
    )

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from detectron2.layers import Conv2d  # noqa: E402
from torch import nn  # noqa: E402

pytest.importorskip("triton")

from gn_det.layers import GroupNorm, group_norm_act  # noqa: E402


@pytest.fixture(autouse=True)
def _on_device():
    """Tensors and modules the tests make land on DEVICE (cpu: the interpreter; cuda: native)."""
    with torch.device(DEVICE):
        yield


@pytest.fixture
def kernels(monkeypatch):
    """The Triton backend unchecked (GN_DET_TRITON=on): a kernel bug fails these tests instead of
    falling back to torch's kernels."""
    monkeypatch.setenv("GN_DET_TRITON", "on")
    from gn_det.layers import triton_launch

    return triton_launch


@pytest.fixture
def small_tiles(kernels):
    """Force small tiles and several HW chunks per reduction; restored afterwards."""
    backend = kernels.TRITON_BACKEND

    def set_tiles(tile, num_splits):
        backend.tile, backend.num_splits = tile, num_splits

    yield set_tiles
    backend.tile, backend.num_splits = kernels._TILE, None


def _reference_grads(x, weight, bias, groups, activation, dy):
    # float64, so that only the kernels' float32 rounding is measured
    x, weight, bias = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    y = F.group_norm(x, groups, weight, bias, 1e-5)
    y = F.relu(y) if activation == "relu" else y
    return (y, *torch.autograd.grad(y, (x, weight, bias), dy.double()))


def _check(shape, groups, activation, channels_last=False, dtype=torch.float32, tol=None, shift=0.0):
    x = (torch.randn(*shape) * 2 + shift).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = (torch.rand(shape[1]) + 0.5).requires_grad_()  # fp32 affine, as under AMP
    bias = torch.randn(shape[1]).requires_grad_()
    dy = torch.randn(*shape).to(dtype)
    y = group_norm_act(x, weight, bias, groups, activation=activation, backend="triton")
    got = (y, *torch.autograd.grad(y, (x, weight, bias), dy))
    want = _reference_grads(x, weight, bias, groups, activation, dy)
    tol = tol or dict(atol=1e-5, rtol=1e-4)
    assert y.dtype == dtype
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for name, a, b in zip(("output", "input grad", "gamma grad", "beta grad"), got, want):
        torch.testing.assert_close(a.double(), b, **tol, msg=lambda m: f"{name}: {m}")
    return y


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_forward_and_backward_equal_groupnorm_then_relu(kernels, channels_last, activation):
    _check((2, 32, 9, 10), 8, activation, channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_rois_at_7x7_one_program_per_group(kernels, channels_last):
    # The box head's shape class (8 channels per group at 7x7, an 8x64 tile held by one
    # program; HW = 49 allows no vector alignment). The interpreter runs every program in numpy,
    # so fewer RoIs and groups than the head's 512 x 32.
    plan = kernels.TRITON_BACKEND.plan(torch.empty(12, 64, 7, 7), 8)
    assert plan.whole_groups and (plan.block_c, plan.block_hw) == (8, 64)
    _check((12, 64, 7, 7), 8, "relu", channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_split_groups_at_production_tiles(kernels, channels_last):
    # A (sample, group) of 8 x 1600 elements: too large for one program, so HW is split into
    # chunks (production tile size and chunk count) merged per group.
    x = torch.empty(1, 64, 40, 40)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    plan = kernels.TRITON_BACKEND.plan(x, 8)
    assert not plan.whole_groups and plan.num_splits > 1
    _check((1, 64, 40, 40), 8, "relu", channels_last, shift=20.0)


def test_groups_of_channels_that_are_not_a_power_of_two(kernels):
    _check((2, 24, 9, 9), 8, "relu")  # 3 channels per group: the channel mask is live


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_tile_loops_and_hw_chunks_merge_like_one_pass(kernels, small_tiles, channels_last):
    # Backbone stages at batch 2 loop over many tiles and split HW across programs; force both
    # on a small shape (64-element tiles, 3 chunks), with a large mean to test the merge.
    small_tiles(64, 3)
    _check((2, 16, 12, 11), 4, "relu", channels_last, shift=50.0)


@pytest.mark.parametrize("groups", [1, 16], ids=["LN", "IN"])
def test_one_group_and_one_channel_per_group(kernels, groups):
    _check((3, 16, 5, 6), groups, "relu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_half_precision_inputs_with_float32_statistics(kernels, dtype, channels_last):
    # Output and input gradient are rounded to the input's dtype; the affine gradients stay fp32.
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=4e-3, rtol=4e-3)
    _check((2, 32, 6, 7), 8, "relu", channels_last, dtype=dtype, tol=tol)


def test_statistics_are_float32_and_match_float64(kernels):
    x = torch.randn(2, 16, 8, 8) * 0.5 + 100.0
    _, mean, rstd = kernels.TRITON_BACKEND.forward(x, torch.ones(16), torch.zeros(16), 4, 1e-5, False)
    xd = x.double().view(2, 4, -1)
    assert mean.dtype == rstd.dtype == torch.float32
    torch.testing.assert_close(mean.double(), xd.mean(-1), atol=1e-4, rtol=0)
    torch.testing.assert_close(rstd.double(), (xd.var(-1, correction=0) + 1e-5).rsqrt(), atol=0, rtol=1e-4)


def test_recompute_reproduces_the_forward_output_exactly(kernels):
    x = torch.randn(3, 16, 5, 5)
    w, b = torch.rand(16) + 0.5, torch.randn(16)
    backend = kernels.TRITON_BACKEND
    y, mean, rstd = backend.forward(x, w, b, 4, 1e-5, True)
    assert torch.equal(backend.recompute(x, w, b, mean, rstd, 4, 1e-5, True), y)


def test_next_conv_weight_gradient_through_the_recompute_scope(kernels):
    from gn_det.layers import recompute_scope

    torch.manual_seed(0)
    conv1 = Conv2d(8, 16, 3, padding=1, bias=False)
    gn = GroupNorm(16, 4)
    conv2 = Conv2d(16, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 8, 6, 6)

    def run(fused):
        for p in (*conv1.parameters(), *gn.parameters(), *conv2.parameters()):
            p.grad = None
        with recompute_scope():
            h = conv1(x)
            if fused:
                h = group_norm_act(h, gn.weight, gn.bias, 4, backend="triton")
            else:
                h = F.relu(gn(h))
            out = conv2(h)
        out.square().sum().backward()
        return [p.grad.clone() for p in (conv1.weight, gn.weight, gn.bias, conv2.weight)]

    for got, want in zip(run(True), run(False)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_nan_input_stays_nan_through_the_relu(kernels):
    # tl.maximum would drop NaN on GPU (the interpreter's numpy keeps it either way).
    x = torch.randn(2, 8, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    y = group_norm_act(x, torch.ones(8), torch.zeros(8), 2, activation="relu", backend="triton")
    assert torch.isnan(y[0, :4]).all()
    assert not torch.isnan(y[0, 4:]).any() and not torch.isnan(y[1]).any()


def test_float64_is_refused_with_a_pointer_to_the_torch_backend(kernels):
    with pytest.raises(TypeError, match="float64 runs on the torch backend"):
        group_norm_act(torch.randn(2, 4, 3, 3, dtype=torch.float64), None, None, 2, backend="triton")


def test_fused_conv_uses_triton_for_cuda_tensors_only(kernels):
    # On CPU the automatic choice is gn_det's CPU kernels (torch's for other layouts/dtypes);
    # the Triton path is opt-in or CUDA.
    from gn_det.layers.group_norm_act import choose_backend

    def chosen(x, backend):
        return choose_backend(x, torch.ones(x.shape[1]), 2, True, backend)[0].name

    assert chosen(torch.randn(2, 4, device="cpu"), "auto") == "cpu"
    assert chosen(torch.randn(2, 4, device="cpu").bfloat16(), "auto") == "torch"
    assert chosen(torch.randn(2, 4), "triton") == "triton"
    model = nn.Sequential(Conv2d(4, 8, 1, norm=GroupNorm(8, 2), activation=F.relu))
    assert model(torch.randn(1, 4, 2, 2)).shape == (1, 8, 2, 2)


# --- The checked mode (the default), through the same path a CUDA run takes -----------------
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from gn_det.layers.triton_group_norm import _tile  # noqa: E402


@triton.jit
def _unnormalized_forward_kernel(
    X, Y, W, B, MEAN, RSTD, C, HW, G, cpg, eps,
    HAS_STATS: tl.constexpr, RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr,
    INT64: tl.constexpr, FULL_GROUP: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # A kernel that returns wrong values: y = x, mean 0, rstd 1.
    pid = tl.program_id(0)
    ch = tl.arange(0, BLOCK_CPG)
    offs, mask = _tile(pid // G, (pid % G) * cpg + ch, ch < cpg, tl.arange(0, BLOCK_HW), C, HW, CHANNELS_LAST, INT64)
    tl.store(Y + offs, tl.load(X + offs, mask=mask, other=0.0), mask=mask)
    tl.store(MEAN + pid, 0.0)
    tl.store(RSTD + pid, 1.0)


@triton.jit
def _input_gradient_is_dy_kernel(
    DY, X, DX, W, B, MEAN, RSTD, SUM_DY, SUM_DY_XHAT, C, HW, G, cpg,
    WRITE_DX: tl.constexpr, RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr,
    INT64: tl.constexpr, FULL_GROUP: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # A backward that returns wrong values: dx = dy, affine sums 0.
    pid = tl.program_id(0)
    n = pid // G
    ch = tl.arange(0, BLOCK_CPG)
    c = (pid % G) * cpg + ch
    offs, mask = _tile(n, c, ch < cpg, tl.arange(0, BLOCK_HW), C, HW, CHANNELS_LAST, INT64)
    tl.store(DX + offs, tl.load(DY + offs, mask=mask, other=0.0), mask=mask)
    tl.store(SUM_DY + n * C + c, tl.zeros([BLOCK_CPG], tl.float32), mask=ch < cpg)
    tl.store(SUM_DY_XHAT + n * C + c, tl.zeros([BLOCK_CPG], tl.float32), mask=ch < cpg)


@triton.jit
def _raising_forward_kernel(
    X, Y, W, B, MEAN, RSTD, C, HW, G, cpg, eps,
    HAS_STATS: tl.constexpr, RELU: tl.constexpr, CHANNELS_LAST: tl.constexpr, VEC: tl.constexpr,
    INT64: tl.constexpr, FULL_GROUP: tl.constexpr, BLOCK_CPG: tl.constexpr, BLOCK_HW: tl.constexpr,
):
    # A kernel that raises while it runs (as a compiler or launcher error would at its launch).
    tl.static_assert(BLOCK_CPG < 0, "simulated kernel failure")


@pytest.fixture
def checked(monkeypatch):
    """GN_DET_TRITON unset (checked), no verdicts yet; the kernel module, to replace kernels."""
    monkeypatch.delenv("GN_DET_TRITON", raising=False)
    from gn_det.layers import triton_checked, triton_group_norm

    triton_checked.CHECKED_TRITON.reset()
    yield triton_group_norm
    triton_checked.CHECKED_TRITON.reset()


def _train_call(backend, seed=0, shape=(2, 16, 5, 5)):
    torch.manual_seed(seed)
    x = (torch.randn(*shape) * 3 + 1).requires_grad_()
    weight, bias = (torch.rand(shape[1]) + 0.5).requires_grad_(), torch.randn(shape[1]).requires_grad_()
    y = group_norm_act(x, weight, bias, 4, activation="relu", backend=backend)
    return (y.detach(), *torch.autograd.grad(y, (x, weight, bias), torch.randn(*shape)))


def _fallback_warnings(record):
    from gn_det.layers.triton_checked import TritonFallbackWarning

    return [str(w.message) for w in record if issubclass(w.category, TritonFallbackWarning)]


@pytest.mark.parametrize(
    "replaced,kernel,reason",
    [
        ("group_forward_kernel", _unnormalized_forward_kernel, "forward: the forward output differs from torch's"),
        ("group_backward_kernel", _input_gradient_is_dy_kernel, "backward: the input gradient differs from torch's"),
        ("group_forward_kernel", _raising_forward_kernel, "forward: "),
    ],
    ids=["wrong forward values", "wrong backward values", "raising kernel"],
)
def test_a_failing_kernel_falls_back_to_torch_with_one_warning(checked, monkeypatch, replaced, kernel, reason):
    from gn_det.layers.group_norm_act import choose_backend
    from gn_det.layers.triton_checked import CHECKED_TRITON

    monkeypatch.setattr(checked, replaced, kernel)
    with pytest.warns(Warning) as record:
        first = _train_call("triton")
        second = _train_call("triton", seed=1)
    messages = _fallback_warnings(record)
    assert len(messages) == 1, messages
    assert reason in messages[0] and "float32, NCHW (one program per (sample, group)" in messages[0]
    # Exactly torch's results from the failing phase on (a backward failure follows a forward
    # that passed its check: that output is Triton's, within tolerance of torch's).
    want = _train_call("torch")
    torch.testing.assert_close(first[0], want[0], atol=1e-5, rtol=1e-4)
    for a, b in zip(first[0 if "forward" in reason else 1:], want[0 if "forward" in reason else 1:]):
        assert torch.equal(a, b)
    for a, b in zip(second, _train_call("torch", seed=1)):
        assert torch.equal(a, b)
    chosen, why = choose_backend(torch.randn(2, 16, 5, 5), torch.ones(16), 4, True, "triton")
    assert chosen.name == "torch" and "failed its check" in why
    (verdict,) = CHECKED_TRITON.verdicts()
    assert verdict["status"] == "fell back" and verdict["reason"].startswith(reason.split(":")[0])


def test_checked_kernels_that_agree_with_torch_are_verified_once_and_kept(checked, recwarn):
    from gn_det.layers.triton_checked import CHECKED_TRITON

    _train_call("triton")
    got = _train_call("triton", seed=1)
    assert not _fallback_warnings(recwarn)
    (verdict,) = CHECKED_TRITON.verdicts()
    assert verdict["status"] == "verified" and verdict["phases"] == ["backward", "forward"]
    want = _train_call("torch", seed=1)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
