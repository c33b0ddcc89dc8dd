"""The fused GroupNorm+activation op (torch and CPU-kernel backends) against nn.GroupNorm then ReLU."""

import pytest
import torch
import torch.nn.functional as F

from gn_det.layers import GroupNormActFunction, group_norm_act


def _reference(x, weight, bias, groups, activation, eps=1e-5):
    y = F.group_norm(x, groups, weight, bias, eps)
    return F.relu(y) if activation == "relu" else y


def _inputs(shape, channels_last=False, dtype=torch.float32, scale=1.0, shift=0.0):
    x = torch.randn(*shape, dtype=dtype) * scale + shift
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    weight = (torch.rand(c, dtype=dtype) + 0.5).requires_grad_()
    bias = (torch.randn(c, dtype=dtype) * 0.5).requires_grad_()
    return x.requires_grad_(), weight, bias


def _assert_matches_reference(shape, groups, activation, channels_last=False, backend="auto"):
    """Forward equals GN then the activation; gradients equal GN's float64 gradients of dy masked
    where *this* output is positive (an element within rounding of 0 may round to either side
    in different kernels, and each side's gradient is consistent with its own output)."""
    x, weight, bias = _inputs(shape, channels_last)
    dy = torch.randn(*shape)
    y = group_norm_act(x, weight, bias, groups, activation=activation, backend=backend)
    grads = torch.autograd.grad(y, (x, weight, bias), dy)
    torch.testing.assert_close(y, _reference(x, weight, bias, groups, activation), atol=1e-5, rtol=1e-4)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    dy_masked = dy * (y > 0) if activation == "relu" else dy
    grads_ref = torch.autograd.grad(F.group_norm(x64, groups, w64, b64, 1e-5), (x64, w64, b64), dy_masked.double())
    for name, g, g_ref in zip(("input", "gamma", "beta"), grads, grads_ref):
        # float32 sums over N*H*W (gamma, beta) or a group (input): error relative to the scale.
        atol = 2e-6 * g_ref.abs().max().item()
        torch.testing.assert_close(g.double(), g_ref, atol=atol, rtol=1e-4, msg=lambda m: f"{name} gradient: {m}")
    return y


# Shapes the model produces (scaled down where only the channel/group structure matters).
@pytest.mark.parametrize(
    "shape,groups",
    [
        ((2, 64, 25, 42), 32),  # backbone stage / FPN level, batch of 2 images
        ((300, 256, 7, 7), 32),  # box head: hundreds of RoIs at 7x7
        ((64, 256, 14, 14), 32),  # mask head at 14x14
        ((2, 2048, 4, 5), 32),  # res5 conv3: 64 channels per group
        ((3, 32, 6, 6), 1),  # LN: one group
        ((3, 32, 6, 6), 32),  # IN: one channel per group
    ],
)
@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_forward_and_gradients_equal_groupnorm_then_activation(shape, groups, activation, backend):
    _assert_matches_reference(shape, groups, activation, backend=backend)


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_channels_last_input_gives_channels_last_output_and_same_numbers(activation):
    y = _assert_matches_reference((4, 64, 9, 11), 32, activation, channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_1d_and_2d_inputs_are_normalized_like_groupnorm():
    _assert_matches_reference((5, 16, 13), 4, "relu")  # (N, C, L)
    _assert_matches_reference((5, 16), 4, "relu")  # (N, C): the box head's fc input has no GN


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_float64_gradcheck(activation, backend):
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: group_norm_act(x, w, b, 3, activation=activation, backend=backend), (x, weight, bias)
    )


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_large_mean_does_not_lose_precision(backend):
    # A conv output far from zero: E[x^2]-E[x]^2 would cancel; torch's kernel and ours do not.
    x, weight, bias = _inputs((2, 32, 8, 8), shift=300.0, scale=0.5)
    ref = _reference(x.double(), weight.double(), bias.double(), 8, "identity").float()
    torch.testing.assert_close(
        group_norm_act(x, weight, bias, 8, activation="identity", backend=backend), ref, atol=2e-4, rtol=1e-4
    )


def test_saves_only_the_input_the_affine_and_per_group_statistics():
    x, weight, bias = _inputs((4, 32, 10, 10))
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = group_norm_act(x, weight, bias, 8, activation="relu")
    assert y.grad_fn.name().startswith("GroupNormActFunction")
    assert sorted(saved) == sorted([(4, 32, 10, 10), (32,), (32,), (4, 8), (4, 8)])


def test_the_unfused_reference_keeps_a_second_full_tensor():
    # What the fused op removes: GN then ReLU keeps GN's input and ReLU's output.
    x, weight, bias = _inputs((4, 32, 10, 10))
    full = []

    def pack(t):
        if t.shape == x.shape:
            full.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _reference(x, weight, bias, 8, "relu")
    assert len({t.data_ptr() for t in full}) == 2


def test_zero_rois_give_an_empty_output_and_zero_affine_gradients():
    x, weight, bias = _inputs((0, 256, 7, 7))
    y = group_norm_act(x, weight, bias, 32, activation="relu")
    assert y.shape == (0, 256, 7, 7)
    y.sum().backward()
    assert x.grad.shape == (0, 256, 7, 7)
    torch.testing.assert_close(weight.grad, torch.zeros(256))
    torch.testing.assert_close(bias.grad, torch.zeros(256))


def test_inference_builds_no_graph_and_attaches_no_recipe():
    x, weight, bias = _inputs((2, 16, 5, 5))
    with torch.no_grad():
        y = group_norm_act(x, weight, bias, 4, activation="relu")
    assert y.grad_fn is None
    assert not hasattr(y, "_gn_det_group_norm_act")
    torch.testing.assert_close(y, _reference(x, weight, bias, 4, "relu").detach())


def test_without_affine_it_is_plain_group_normalization():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    y = group_norm_act(x, None, None, 2, activation="identity")
    torch.testing.assert_close(y, F.group_norm(x, 2))
    y.sum().backward()
    assert x.grad is not None


def test_cpu_statistics_keep_float32_precision_when_the_first_element_is_an_outlier():
    # The kernel sums x - shift; the shift must be near the group's mean, not just its first
    # element (a padded corner of a conv output can sit far from the rest).
    x = torch.randn(2, 64, 20, 20) + 3 * torch.randn(1, 64, 1, 1)
    x[:, :, 0, 0] += 50
    _, mean, rstd = torch.ops.gn_det.group_norm_act_forward(x, torch.ones(64), torch.zeros(64), 8, 1e-5, False)
    x64 = x.double().view(2, 8, -1)
    rstd64 = (x64.var(-1, unbiased=False) + 1e-5).rsqrt()
    torch.testing.assert_close(mean.double(), x64.mean(-1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rstd.double(), rstd64, atol=0, rtol=5e-7)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_a_nan_input_stays_nan_through_the_relu(backend):
    # A diverging model must stay visible to the non-finite checks: ReLU keeps NaN.
    x = torch.randn(2, 8, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    y = group_norm_act(x, torch.ones(8), torch.zeros(8), 2, activation="relu", backend=backend)
    assert torch.isnan(y[0, :4]).all()  # the NaN's whole group
    assert not torch.isnan(y[0, 4:]).any() and not torch.isnan(y[1]).any()


def test_low_precision_input_keeps_its_dtype_with_float32_statistics():
    x = torch.randn(2, 16, 6, 6)
    weight, bias = torch.rand(16) + 0.5, torch.randn(16)
    y = group_norm_act(x.bfloat16(), weight, bias, 4, activation="relu")
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(
        y.float(), _reference(x.bfloat16().float(), weight, bias, 4, "relu"), atol=2e-2, rtol=2e-2
    )


def test_double_backward_is_refused_with_a_clear_error():
    x, weight, bias = _inputs((2, 8, 3, 3))
    (gx,) = torch.autograd.grad(group_norm_act(x, weight, bias, 2).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward|once_differentiable|differentiable"):
        gx.sum().backward()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_groups=5), r"num_groups=5 does not divide the input's 16 channels"),
        (dict(activation="gelu"), r"activation='gelu'; valid: relu, identity"),
        (dict(backend="cuda"), r"backend='cuda'; valid: auto, torch, cpu, triton"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = dict(num_groups=4, activation="relu", backend="auto")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        group_norm_act(
            torch.randn(2, 16, 3, 3), torch.ones(16), torch.zeros(16), where="MODEL.FPN.NORM", **args
        )


def test_wrong_affine_shape_names_the_layer():
    with pytest.raises(ValueError, match=r"in MODEL\.FPN\.NORM: weight has shape \(8,\), expected \(16,\)"):
        group_norm_act(torch.randn(2, 16, 3, 3), torch.ones(8), torch.zeros(16), 4, where="MODEL.FPN.NORM")


def test_function_is_the_autograd_node():
    x, weight, bias = _inputs((2, 8, 3, 3))
    y = group_norm_act(x, weight, bias, 2)
    assert type(y.grad_fn).__name__ == GroupNormActFunction.__name__ + "Backward"


def test_auto_picks_the_cpu_kernels_for_contiguous_float_cpu_tensors_and_torch_otherwise():
    from gn_det.layers.group_norm_act import choose_backend, cpu_kernels_available

    assert cpu_kernels_available(), (
        "gn_det._C is not built: run `pip install --no-build-isolation -e .` with a C++ compiler "
        "(scripts/setup_env.sh does); the 'cpu' backend tests need it"
    )
    x = torch.randn(2, 8, 4, 4)

    def chosen(t):
        return choose_backend(t, torch.ones(8), 2, True, "auto")[0].name

    assert chosen(x) == "cpu"
    assert chosen(x.double()) == "cpu"
    assert chosen(x.contiguous(memory_format=torch.channels_last)) == "torch"
    assert chosen(x.bfloat16()) == "torch"


def test_cpu_backend_refuses_inputs_it_does_not_take():
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(TypeError, match=r"backend='cpu' takes contiguous float32/float64 CPU tensors"):
        group_norm_act(x, None, None, 2, backend="cpu")


def test_cpu_backend_recompute_reproduces_the_forward_bit_for_bit():
    x, weight, bias = _inputs((3, 16, 7, 9), shift=2.0)
    y = group_norm_act(x, weight, bias, 4, activation="relu", backend="cpu")
    assert torch.equal(getattr(y, "_gn_det_group_norm_act").recompute(), y)


def test_cpu_backend_writes_the_input_gradient_over_the_handed_over_output():
    # The next layer's backward is done with the recomputed output: dx takes its memory.
    x, weight, bias = _inputs((2, 16, 6, 6))
    y = group_norm_act(x, weight, bias, 4, activation="relu", backend="cpu")
    recomputed = getattr(y, "_gn_det_group_norm_act").recompute()
    ptr = recomputed.data_ptr()
    del recomputed
    (dx,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert dx.data_ptr() == ptr


def _cpu_results_with_threads(threads, x, weight, bias, dy):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = x.detach().requires_grad_()
        w, b = weight.detach().requires_grad_(), bias.detach().requires_grad_()
        y = group_norm_act(x, w, b, 8, activation="relu", backend="cpu")
        recomputed = getattr(y, "_gn_det_group_norm_act").recompute()
        grads = torch.autograd.grad(y, (x, w, b), dy)
        return (y.detach(), recomputed) + grads
    finally:
        torch.set_num_threads(previous)


def test_cpu_kernels_split_over_threads_give_the_one_thread_results_bit_for_bit():
    # The suite runs torch on one thread; the kernels' at::parallel_for only splits work when the
    # extension is built with OpenMP (setup.py), so run them on two threads here. Each (sample,
    # group) block is computed whole by one thread, so the split cannot change a single bit.
    x, weight, bias = _inputs((4, 64, 24, 20), shift=1.5)
    dy = torch.randn_like(x)
    one = _cpu_results_with_threads(1, x, weight, bias, dy)
    two = _cpu_results_with_threads(2, x, weight, bias, dy)
    for name, a, b in zip(["y", "recomputed", "dx", "dweight", "dbias"], one, two):
        assert torch.equal(a, b), name


def test_cpu_affine_gradients_split_over_threads_give_the_one_thread_results_bit_for_bit():
    # Many RoIs: the affine gradients' loop over channels (a sum over N each) is split into tasks
    # of max(1, 32768 // N) channels, here 27 of 64; each channel is still summed by one thread.
    x, weight, bias = _inputs((1200, 64, 3, 3))
    dy = torch.randn_like(x)
    one = _cpu_results_with_threads(1, x, weight, bias, dy)
    two = _cpu_results_with_threads(2, x, weight, bias, dy)
    for name, a, b in zip(["dweight", "dbias"], one[3:], two[3:]):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True), (False, True, True)])
def test_cpu_backward_returns_exactly_the_gradients_asked_for(needs):
    x, weight, bias = (t.detach() for t in _inputs((6, 64, 5, 7)))
    dy = torch.randn_like(x)
    y, mean, rstd = torch.ops.gn_det.group_norm_act_forward(x, weight, bias, 8, 1e-5, True)
    full = torch.ops.gn_det.group_norm_act_backward(dy, x, weight, bias, mean, rstd, True, None, [True] * 3)
    some = torch.ops.gn_det.group_norm_act_backward(dy, x, weight, bias, mean, rstd, True, None, list(needs))
    for name, wanted, a, b in zip(["dx", "dweight", "dbias"], needs, full, some):
        if wanted:
            assert torch.equal(a, b), name
        else:
            assert b is None, name


def test_cpu_kernels_are_linked_with_openmp():
    # Without -fopenmp the library needs no libgomp and its at::parallel_for runs serially (the
    # kernels stayed on one thread at 2 torch threads: docs/results/2026-12-02_fused_freeze0.md).
    import gn_det._C as kernels

    with open(kernels.__file__, "rb") as library:
        assert b"libgomp.so" in library.read(), "gn_det._C was built without -fopenmp"
