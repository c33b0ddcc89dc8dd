"""The Triton kernels without a GPU: correctness under the interpreter (in a subprocess), and every
Mask R-CNN GN shape's launches emulated over ``meta`` tensors and compiled for sm_90 (H100/H200)
the way Triton's launcher would specialize them: grids within CUDA's limits, registers within
budget and no spills, vector loads where the rows allow them, launches per layer. Compiled
variants are cached for the session (and on disk by Triton): the matrix compiles ~130 variants,
about 30 s of CPU on a fresh cache."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")

from gn_det.layers import triton_launch  # noqa: E402
from gn_det.layers.triton_emulation import (  # noqa: E402
    MASK_RCNN_GN_SHAPES,
    compile_launch,
    emulate_layer,
    grid_problems,
    record_launches,
)
from gn_det.layers.triton_launch import TRITON_BACKEND, TritonLaunchError, make_plan  # noqa: E402

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_INTERPRETED_TESTS = Path(__file__).with_name("test_triton_interpreted.py")
compiles = pytest.mark.skipif(INTERPRETED, reason="compiles real kernels; the interpreter replaces them")


@pytest.mark.skipif(INTERPRETED, reason="TRITON_INTERPRET=1 already: the interpreted tests run directly")
def test_triton_kernels_pass_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(_INTERPRETED_TESTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    assert result.returncode == 0, f"{summary}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert re.search(r"\b\d+ passed\b", summary) and "skipped" not in summary, summary


# --- Every Mask R-CNN shape x dtype x layout, compiled for sm_90 ------------------------------
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_REGISTER_BUDGET = 128  # per thread: at least 4 blocks of 4 warps (16 warps) fit one SM's 64K
_STREAMING = {
    "stats_partial_kernel", "normalize_act_kernel", "backward_reduce_kernel", "backward_dx_kernel",
    "group_forward_kernel", "group_backward_kernel",
}


@compiles
@pytest.mark.parametrize("dtype", list(_DTYPES))
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_every_mask_rcnn_shape_launches_within_limits_and_compiles_without_spills(dtype, channels_last):
    problems = []
    for name, shape, groups in MASK_RCNN_GN_SHAPES:
        plan = make_plan(torch.empty(shape, device="meta", dtype=_DTYPES[dtype]), groups)
        phases = emulate_layer(TRITON_BACKEND, shape, groups, _DTYPES[dtype], channels_last)
        launches = [launch for report in phases.values() for launch in report.launches]
        # One launch per phase for whole groups; 3 + 1 + 3 for split groups (+ one torch sum
        # for both affine gradients).
        expected = (1, 1, 1) if plan.whole_groups else (3, 1, 3)
        assert tuple(len(r.launches) for r in phases.values()) == expected, name
        assert [len(r.torch_kernels) for r in phases.values()] == [0, 0, 1], name
        for launch in launches:
            used = compile_launch(launch)
            where = f"{name} {dtype} {'channels-last' if channels_last else 'NCHW'} {launch.name} {used}"
            problems += [f"{where}: {p}" for p in grid_problems(launch.grid)]
            if used.stack_bytes or used.local_bytes:
                problems.append(f"{where}: spills")
            if used.registers > _REGISTER_BUDGET:
                problems.append(f"{where}: {used.registers} registers")
            # Rows whose length allows 16-byte alignment must be read in 16-byte vectors.
            aligned = launch.kwargs.get("VEC", 1) * _DTYPES[dtype].itemsize >= 16
            if launch.name in _STREAMING and aligned and used.streamed_load_bytes != (16,):
                problems.append(f"{where}: the streamed tensor is not read in 16-byte vectors")
    assert not problems, "\n".join(problems)


def test_a_large_channels_last_image_keeps_its_blocks_on_grid_axis_0():
    # (1, 256, 1024, 1025) channels-last: 65,600 position blocks, beyond CUDA's 65,535 for
    # grid axes 1 and 2 (where they were before), well within axis 0's 2^31 - 1.
    for channels_last in (False, True):
        phases = emulate_layer(TRITON_BACKEND, (1, 256, 1024, 1025), 32, torch.float32, channels_last)
        for report in phases.values():
            for launch in report.launches:
                assert not grid_problems(launch.grid), (launch.name, launch.grid)
                assert all(size <= 65535 for size in launch.grid[1:])


@compiles
def test_tensors_of_2_31_elements_or_more_use_64_bit_offsets():
    shape = (2, 256, 2048, 2048)  # 2^31 elements
    assert not make_plan(torch.empty(1, 256, 2048, 2048, device="meta"), 32).int64
    assert make_plan(torch.empty(shape, device="meta"), 32).int64
    for report in emulate_layer(TRITON_BACKEND, shape, 32, torch.bfloat16, True).values():
        for launch in report.launches:
            used = compile_launch(launch)
            assert not grid_problems(launch.grid) and used.stack_bytes == 0, (launch.name, used)


# --- The checks before a launch -----------------------------------------------------------------
def _plan(**changes):
    plan = make_plan(torch.empty(2, 64, 40, 40, device="meta"), 8)
    return plan.__class__(**dict(plan.__dict__, **changes))


@pytest.mark.parametrize(
    "plan,tensors,match",
    [
        (_plan(c=4 * 65536), (torch.empty(2, device="meta"),), r"grid axis 1 would be 65536, outside 1\.\.65535"),
        (_plan(), (torch.empty(2, device="meta", dtype=torch.float64),), r"dtype torch\.float64"),
        (_plan(), (torch.empty(2, device="meta"), torch.empty(2)), r"tensors on meta and cpu"),
        (_plan(vec=128), (torch.empty(2, device="meta"),), r"VEC=128 does not divide the row length 1600"),
        (_plan(n=2**21), (torch.empty(2, device="meta"),), r"overflow the offsets' width"),
    ],
    ids=["grid", "dtype", "device", "alignment", "index width"],
)
def test_a_launch_that_could_not_be_taken_back_is_refused_before_it(plan, tensors, match):
    with pytest.raises(TritonLaunchError, match=match):
        plan.check(*tensors)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(TritonLaunchError, match="TRITON_INTERPRET=1"):
        _plan().check(torch.empty(2))


def test_a_misaligned_input_gets_a_narrower_vector():
    x = torch.empty(2 * 64 * 40 * 40 + 1)[1:].view(2, 64, 40, 40)  # 4 bytes past a 16-byte boundary
    assert make_plan(x, 8).vec == 1 and make_plan(x.clone(), 8).vec == 4


# --- The device guard -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 32, 7, 7), (2, 32, 40, 40)], ids=["whole groups", "split groups"])
def test_every_launch_runs_with_the_tensors_device_current(monkeypatch, shape):
    # Fake CUDA tensors on cuda:1 while cuda:0 is current (a model on MODEL.DEVICE cuda:1):
    # Triton launches on the current device, so each launch must run under a guard for cuda:1.
    from torch._subclasses.fake_tensor import FakeTensorMode

    current = [0]

    class DeviceGuard:  # torch.cuda.device, without a GPU
        def __init__(self, device):
            self.index = torch.device(device).index

        def __enter__(self):
            self.previous, current[0] = current[0], self.index

        def __exit__(self, *exc):
            current[0] = self.previous

    monkeypatch.setattr(torch.cuda, "device", DeviceGuard)
    monkeypatch.setattr(triton_launch, "_address", lambda t: 0)  # fake tensors have no memory
    from triton.runtime.jit import JITFunction

    devices = []
    with record_launches() as launches, FakeTensorMode(), monkeypatch.context() as patch:
        recorder = JITFunction.run  # undone before record_launches restores Triton's own
        patch.setattr(JITFunction, "run", lambda *a, **k: (devices.append(current[0]), recorder(*a, **k)))
        x = torch.empty(shape, device="cuda:1")
        w = torch.empty(shape[1], device="cuda:1")
        y, mean, rstd = TRITON_BACKEND.forward(x, w, w, 8, 1e-5, True)
        TRITON_BACKEND.recompute(x, w, w, mean, rstd, 8, 1e-5, True)
        TRITON_BACKEND.backward(y, x, w, w, mean, rstd, 8, 1e-5, True, None, (True, True, True))
    assert JITFunction.run is not recorder
    assert len(devices) == len(launches) >= 3
    assert set(devices) == {1} and current[0] == 0
