"""The Triton kernels without a GPU: correctness under the interpreter (in a subprocess), and
compilation for an H100/H200-class GPU (sm_90) with the installed triton and its bundled ptxas."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_INTERPRETED_TESTS = Path(__file__).with_name("test_triton_interpreted.py")


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


# --- compilation for sm_90 (no GPU or driver needed) ---------------------------------------
def _compile(kernel, signature, constexprs, aligned=()):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(signature)
    # What Triton's launcher infers for 16-byte aligned pointers and sizes divisible by 16.
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned if n in names}
    compiled = triton.compile(
        ASTSource(kernel, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32)
    )
    return compiled.asm["ptx"]


def _strides(channels_last):
    # Triton specializes an integer argument equal to 1 into a constant; mirror that.
    unit = "stride_c" if channels_last else "stride_hw"
    other = "stride_hw" if channels_last else "stride_c"
    return (
        {"stride_n": "i32", "stride_c": "i32", "stride_hw": "i32", unit: "constexpr"},
        {unit: 1},
        ["stride_n", other],
    )


@pytest.mark.skipif(INTERPRETED, reason="compiles real kernels; the interpreter replaces them")
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_kernels_compile_for_sm90_with_vectorized_access(dtype, channels_last):
    from gn_det.layers import triton_group_norm as T

    block_c, block_hw = T._blocks(256, 200 * 336, channels_last)
    sig_strides, const_strides, aligned_strides = _strides(channels_last)
    stat = {"MEAN": "*fp32", "RSTD": "*fp32"}
    affine = {"W": "*fp32", "B": "*fp32"}
    sizes = {"C": "i32", "HW": "i32", "G": "i32", "channels_per_group": "i32"}
    blocks = dict(RELU=True, BLOCK_C=block_c, BLOCK_HW=block_hw, **const_strides)
    block_sig = {"RELU": "constexpr", "BLOCK_C": "constexpr", "BLOCK_HW": "constexpr"}
    aligned = ["X", "Y", "DY", "DX", "C", "HW", *aligned_strides]

    normalize = _compile(
        T._normalize_act_kernel,
        {"X": "*" + dtype, "Y": "*" + dtype, **affine, **stat, **sizes, **sig_strides, **block_sig},
        blocks,
        aligned,
    )
    dx = _compile(
        T._backward_dx_kernel,
        {
            "DY": "*" + dtype,
            "X": "*" + dtype,
            "DX": "*" + dtype,
            **affine,
            **stat,
            "COEF1": "*fp32",
            "COEF2": "*fp32",
            **sizes,
            **sig_strides,
            **block_sig,
        },
        blocks,
        aligned,
    )
    split = {"hw_per_split": "i32", "num_splits": "i32"}
    reduce = _compile(
        T._backward_reduce_kernel,
        {
            "DY": "*" + dtype,
            "X": "*" + dtype,
            **affine,
            **stat,
            "PSUM_DY": "*fp32",
            "PSUM_DY_XHAT": "*fp32",
            **sizes,
            **sig_strides,
            **split,
            **block_sig,
        },
        blocks,
        aligned + ["hw_per_split"],
    )
    stats = _compile(
        T._stats_partial_kernel,
        {
            "X": "*" + dtype,
            "PMEAN": "*fp32",
            "PM2": "*fp32",
            "C": "i32",
            "HW": "i32",
            **sig_strides,
            **split,
            "BLOCK_C": "constexpr",
            "BLOCK_HW": "constexpr",
        },
        dict(BLOCK_C=block_c, BLOCK_HW=block_hw, **const_strides),
        aligned + ["hw_per_split"],
    )
    # Memory-bound kernels must move data in vector loads/stores along the unit-stride axis.
    for name, ptx in (
        ("normalize", normalize),
        ("dx", dx),
        ("backward reduce", reduce),
        ("statistics", stats),
    ):
        assert re.search(r"ld\.global(\.\w+)*\.v[248]", ptx), f"{name}: no vectorized loads"
    for name, ptx in (("normalize", normalize), ("dx", dx)):
        assert re.search(r"st\.global(\.\w+)*\.v[248]", ptx), f"{name}: no vectorized stores"


@pytest.mark.skipif(INTERPRETED, reason="compiles real kernels; the interpreter replaces them")
def test_merge_kernels_compile_for_sm90():
    from gn_det.layers import triton_group_norm as T

    i32 = "i32"
    _compile(
        T._stats_finalize_kernel,
        {
            "PMEAN": "*fp32",
            "PM2": "*fp32",
            "MEAN": "*fp32",
            "RSTD": "*fp32",
            "C": i32,
            "G": i32,
            "channels_per_group": i32,
            "HW": i32,
            "hw_per_split": i32,
            "num_splits": i32,
            "inv_group_size": "fp32",
            "eps": "fp32",
            "BLOCK_G": "constexpr",
            "BLOCK_P": "constexpr",
        },
        {"BLOCK_G": 32, "BLOCK_P": 8},
    )
    _compile(
        T._backward_finalize_kernel,
        {
            "PSUM_DY": "*fp32",
            "PSUM_DY_XHAT": "*fp32",
            "W": "*fp32",
            "RSTD": "*fp32",
            "SUM_DY": "*fp32",
            "SUM_DY_XHAT": "*fp32",
            "COEF1": "*fp32",
            "COEF2": "*fp32",
            "C": i32,
            "G": i32,
            "channels_per_group": i32,
            "num_splits": i32,
            "inv_group_size": "fp32",
            "BLOCK_G": "constexpr",
            "BLOCK_P": "constexpr",
        },
        {"BLOCK_G": 32, "BLOCK_P": 8},
    )
