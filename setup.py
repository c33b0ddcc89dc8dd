"""gn_det: Group Normalization for Detectron2.

detectron2 is not on PyPI, so it is not in install_requires: install it from its upstream source
first (README.md, "Set-up"). This setup.py refuses to install gn_det into a Python without it,
because ``import gn_det`` cannot work there.
"""
import os
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

setup(
    name="gn_det",
    version="0.1.0",
    description="Group Normalization for Detectron2: GN backbones, FPN and heads, configs and tools",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["gn_det", "gn_det.*"]),
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
    extras_require={"test": ["pytest>=7"]},
)
