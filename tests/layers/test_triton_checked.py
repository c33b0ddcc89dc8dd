"""GN_DET_TRITON and the checked mode's decisions, on CPU without the interpreter: the Triton
backend is replaced by stand-ins that raise or return chosen values (the interpreted tests run the
real kernels, replaced by failing ones, through the same path)."""

import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

pytest.importorskip("triton")

from gn_det.layers.group_norm_act import choose_backend  # noqa: E402
from gn_det.layers.group_norm_act_backends import TORCH_BACKEND  # noqa: E402
from gn_det.layers.triton_checked import (  # noqa: E402
    CHECKED_TRITON,
    CheckedTritonBackend,
    TritonFallbackWarning,
    triton_mode,
)
from gn_det.layers import triton_launch  # noqa: E402
from gn_det.layers.triton_launch import TritonGroupNormBackend  # noqa: E402


@pytest.mark.parametrize("value,mode", [(None, "checked"), ("", "checked"), ("off", "off"), (" ON ", "on")])
def test_the_setting_comes_from_gn_det_triton(monkeypatch, value, mode):
    if value is None:
        monkeypatch.delenv("GN_DET_TRITON", raising=False)
    else:
        monkeypatch.setenv("GN_DET_TRITON", value)
    assert triton_mode() == mode


def test_an_unknown_setting_is_named_with_the_valid_ones(monkeypatch):
    monkeypatch.setenv("GN_DET_TRITON", "yes")
    with pytest.raises(ValueError, match=r"GN_DET_TRITON='yes' \(environment variable\); valid: off, checked"):
        triton_mode()


@pytest.mark.parametrize(
    "mode,dtype,chosen,why",
    [
        ("off", torch.float32, "torch", "GN_DET_TRITON=off"),
        (None, torch.bfloat16, "triton-checked", "checked (the default)"),
        ("on", torch.float16, "triton", "GN_DET_TRITON=on"),
        (None, torch.float64, "torch", "the Triton kernels take float32, float16 and bfloat16"),
    ],
)
def test_cuda_tensors_get_the_kernels_the_setting_names(monkeypatch, mode, dtype, chosen, why):
    if mode is None:
        monkeypatch.delenv("GN_DET_TRITON", raising=False)
    else:
        monkeypatch.setenv("GN_DET_TRITON", mode)
    CHECKED_TRITON.reset()
    monkeypatch.setattr(triton_launch, "_address", lambda t: 0)  # fake tensors have no memory
    with FakeTensorMode():  # CUDA tensors without a GPU
        x = torch.empty(2, 32, 10, 10, device="cuda:0", dtype=dtype)
        backend, reason = choose_backend(x, torch.empty(32, device="cuda:0"), 8, True)
    assert backend.name == chosen and why in reason


# --- The checked wrapper around stand-in kernels ---------------------------------------------
class _Perturbed(TritonGroupNormBackend):
    """torch's results, the output or the input gradient scaled by ``1 + error``."""

    def __init__(self, error=0.0, phase="forward", exception=None):
        super().__init__()
        self.error, self.phase, self.exception = error, phase, exception

    def forward(self, x, weight, bias, num_groups, eps, relu):
        if self.exception is not None:
            raise self.exception
        y, mean, rstd = TORCH_BACKEND.forward(x, weight, bias, num_groups, eps, relu)
        return (y * (1 + self.error) if self.phase == "forward" else y), mean, rstd

    def recompute(self, x, weight, bias, mean, rstd, num_groups, eps, relu):
        return TORCH_BACKEND.recompute(x, weight, bias, mean, rstd, num_groups, eps, relu)

    def backward(self, dy, x, weight, bias, mean, rstd, num_groups, eps, relu, output, needs):
        dx, dw, db = TORCH_BACKEND.backward(dy, x, weight, bias, mean, rstd, num_groups, eps, relu, None, needs)
        return (dx * (1 + self.error) if self.phase == "backward" else dx), dw, db


def _run(checked, shape=(2, 16, 6, 6), groups=4):
    torch.manual_seed(0)
    x, w, b = torch.randn(shape), torch.rand(shape[1]) + 0.5, torch.randn(shape[1])
    y, mean, rstd = checked.forward(x, w, b, groups, 1e-5, True)
    grads = checked.backward(torch.randn(shape), x, w, b, mean, rstd, groups, 1e-5, True, None, (True, True, True))
    return y, grads


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_a_difference_within_the_cpu_tests_tolerance_passes_and_beyond_it_falls_back(phase):
    # 1e-4 relative is the CPU tests' rtol (doubled for two kernels); 1e-2 is far beyond it.
    within = CheckedTritonBackend(_Perturbed(1e-4, phase))
    with warnings.catch_warnings():
        warnings.simplefilter("error", TritonFallbackWarning)
        _run(within)
    assert [v["status"] for v in within.verdicts()] == ["verified"]
    beyond = CheckedTritonBackend(_Perturbed(1e-2, phase))
    with pytest.warns(TritonFallbackWarning, match=f"Reason: {phase}: the (forward output|input gradient) differs"):
        y, grads = _run(beyond)
    assert [v["status"] for v in beyond.verdicts()] == ["fell back"]
    want_y, want_grads = _run(TORCH_BACKEND)
    assert torch.equal(grads[0], want_grads[0]) and (phase == "backward" or torch.equal(y, want_y))


def test_one_failure_of_the_toolchain_gives_one_warning_for_every_variant_it_disables():
    # Triton builds its launcher with the host C compiler on first use: without one, every
    # variant fails the same way. Two shapes of different shape classes, one warning.
    missing_cc = RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")
    checked = CheckedTritonBackend(_Perturbed(exception=missing_cc))
    with pytest.warns(TritonFallbackWarning) as record:
        _run(checked, (2, 16, 6, 6))
        _run(checked, (1, 64, 40, 40), 8)
    assert len([w for w in record if w.category is TritonFallbackWarning]) == 1
    assert "RuntimeError: Failed to find C compiler" in str(record[0].message)
    assert [v["status"] for v in checked.verdicts()] == ["fell back", "fell back"]


def test_running_out_of_memory_is_not_blamed_on_the_kernels():
    checked = CheckedTritonBackend(_Perturbed(exception=torch.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(torch.OutOfMemoryError):
        _run(checked)
    assert [v["status"] for v in checked.verdicts()] == ["verified"] and not checked.verdicts()[0]["phases"]


def test_kernels_that_do_not_load_fall_back_once_unless_the_setting_is_on(monkeypatch):
    # A triton that imports but cannot build gn_det's kernel module (another major version, say).
    import importlib
    import sys

    import gn_det.layers

    op = importlib.import_module("gn_det.layers.group_norm_act")  # the module, not the function

    monkeypatch.delattr(gn_det.layers, "triton_checked")
    monkeypatch.setitem(sys.modules, "gn_det.layers.triton_checked", None)
    monkeypatch.setattr(op, "_UNUSABLE", [])
    monkeypatch.delenv("GN_DET_TRITON", raising=False)
    with FakeTensorMode():
        x, w = torch.empty(2, 32, 10, 10, device="cuda:0"), torch.empty(32, device="cuda:0")
        with pytest.warns(TritonFallbackWarning, match="Triton kernels do not load"):
            assert choose_backend(x, w, 8, True)[0].name == "torch"
        with warnings.catch_warnings():
            warnings.simplefilter("error", TritonFallbackWarning)
            assert choose_backend(x, w, 8, True)[0].name == "torch"
        monkeypatch.setenv("GN_DET_TRITON", "on")
        with pytest.raises(ImportError):
            choose_backend(x, w, 8, True)
