"""gn_det: Group Normalization for Detectron2.

detectron2 is not on PyPI, so it is not in install_requires: scripts/setup_env.sh builds it from
its upstream source first (docs/install.md). The pins live in gn_det/environment.py. This setup.py refuses to install gn_det into a Python without it,
because ``import gn_det`` cannot work there.
"""
import os
import runpy
import subprocess
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gn_det"))
import environment as env  # noqa: E402  gn_det/environment.py, importable without torch

sys.path.pop(0)

# Only steps that install gn_det need detectron2; metadata queries (egg_info, --version) do not.
_INSTALL_COMMANDS = {"install", "develop", "bdist_wheel", "editable_wheel"}


def _detectron2_importable() -> bool:
    # A clean subprocess of the same interpreter: pip's isolated build env hides site-packages
    # from this process, but not from a child without its PYTHONPATH.
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('detectron2') is None)"
    return subprocess.run([sys.executable, "-c", probe], env=child_env).returncode == 0


if _INSTALL_COMMANDS.intersection(sys.argv[1:]) and not _detectron2_importable():
    sys.exit("error: " + env.detectron2_missing_message())


# GN_DET_NO_CPU_KERNELS=1 builds gn_det without its C++ kernels (no compiler run: a pure-Python
# wheel), e.g. for a quick install check; the fused op then runs on PyTorch's kernels.
NO_CPU_KERNELS_ENV = "GN_DET_NO_CPU_KERNELS"


def _cpu_kernel_extension():
    """gn_det._C: the fused GroupNorm+ReLU CPU kernels (gn_det/csrc). Optional: without a C++
    compiler (or torch in the build environment) gn_det installs without it and the fused op
    runs on PyTorch's own kernels (``gn_det.layers.cpu_kernels_available()`` says which)."""
    if os.environ.get(NO_CPU_KERNELS_ENV, "") not in ("", "0"):
        print(f"{NO_CPU_KERNELS_ENV} is set: building gn_det without its CPU kernels", file=sys.stderr)
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("warning: torch is not importable here, building gn_det without its CPU kernels "
              "(install torch first and use pip's --no-build-isolation)", file=sys.stderr)
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        def run(self):
            try:
                super().run()
            except Exception as e:  # no compiler, or a compiler that rejects the flags
                print(f"warning: gn_det's CPU kernels were not built ({e}); the fused GroupNorm "
                      "runs on PyTorch's kernels instead", file=sys.stderr)

    ext = CppExtension(
        "gn_det._C",
        ["gn_det/csrc/group_norm_act_cpu.cpp"],
        # -fopenmp: at::parallel_for (ATen/Parallel-inl.h) is inline and runs serially unless the
        # extension itself is compiled with OpenMP; -fopenmp-simd alone left the kernels on one thread.
        extra_compile_args=["-O3", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": OptionalBuildExtension}


_EXT_MODULES, _CMDCLASS = _cpu_kernel_extension()
# The commands (gn-det-train, ...): one list, in gn_det/cli/__init__.py (plain data, no imports).
_CONSOLE_SCRIPTS = runpy.run_path(os.path.join(HERE, "gn_det", "cli", "__init__.py"))["CONSOLE_SCRIPTS"]

setup(
    name="gn_det",
    version="0.1.0",
    description="Group Normalization for Detectron2: GN backbones, FPN and heads, configs and tools",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["gn_det", "gn_det.*"]),
    # The configs ship inside the package (the repository's configs/ links to gn_det/configs/):
    # gn_det.model_zoo finds them with importlib.resources. They are data, not modules: the .py
    # ones are LazyConfig files that LazyConfig.load executes.
    package_data={"gn_det": ["configs/*.yaml", "configs/**/*.yaml", "configs/**/*.py"]},
    entry_points={"console_scripts": [f"{name}={target}" for name, target in _CONSOLE_SCRIPTS.items()]},
    install_requires=[
        # A matching pair: torchvision's compiled ops (nms, roi_align) need exactly this torch.
        f"torch=={env.TORCH_VERSION}",
        f"torchvision=={env.TORCHVISION_VERSION}",
        "fvcore>=0.1.5,<0.1.6",
        "pycocotools>=2.0.2",
        "opencv-python-headless>=4.5",
        "matplotlib",
        "tensorboard",
        # detectron2.model_zoo imports pkg_resources, which setuptools 81+ no longer ships.
        "setuptools<81",
    ],
    extras_require={
        # pytest-xdist: scripts/test.sh runs the suite on every core (`-n auto`).
        "test": ["pytest>=7", "pytest-xdist>=3"],
        # onnxruntime runs exported ONNX models (tools/export_model.py verifies with it);
        # onnxscript is what torch.onnx's torch.export-based exporter (dynamo=True) translates with.
        "export": ["onnx", "onnxscript", "onnxruntime"],
    },
    ext_modules=_EXT_MODULES,
    cmdclass=_CMDCLASS,
)
