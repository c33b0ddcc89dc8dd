"""What gn_det needs from its environment, checked with clear errors.

detectron2 is not on PyPI: it is built from its upstream source against the installed torch.
torch and torchvision must be a matching pair or torchvision's compiled ops (nms, roi_align)
are missing, and detectron2 fails deep inside its ROI heads. These checks turn both situations
into one readable message at import / set-up time.
"""
import importlib.util

# The pins, in one place: setup.py, scripts/setup_env.sh (through --print-pins) and the docs'
# commands (checked by tests/docs/test_docs.py) all take them from here.
# The upstream commit gn_det is developed and tested against.
DETECTRON2_REPO = "https://github.com/facebookresearch/detectron2.git"
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
DETECTRON2_INSTALL = (
    "python3 -m pip install --no-build-isolation "
    f"'git+{DETECTRON2_REPO}@{DETECTRON2_COMMIT}'"
)
# The torch/torchvision pair gn_det pins (see setup.py and scripts/setup_env.sh).
TORCH_VERSION = "2.13.0"
TORCHVISION_VERSION = "0.28.0"


class GNDetEnvironmentError(ImportError):
    """Raised when detectron2 or the torch/torchvision pair is unusable."""


def detectron2_missing_message() -> str:
    return (
        "gn_det needs detectron2, which is not installed in this Python "
        "(it is not on PyPI and must be built from its upstream source, after torch).\n"
        f"Run `bash scripts/setup_env.sh`, which installs it, or install it yourself with:\n"
        f"    {DETECTRON2_INSTALL}\n"
        "Without internet, point the set-up at a local clone or mirror of detectron2: "
        "`GN_DET_DETECTRON2_SRC=/path/to/detectron2 bash scripts/setup_env.sh`."
    )


def require_detectron2() -> None:
    """Raise a clear ImportError when detectron2 is absent or its compiled ops do not load."""
    if importlib.util.find_spec("detectron2") is None:
        raise GNDetEnvironmentError(detectron2_missing_message())
    try:
        from detectron2 import _C  # noqa: F401  compiled against the installed torch
    except ImportError as e:
        raise GNDetEnvironmentError(
            f"detectron2 is installed but its compiled ops do not load ({e}). It was built against "
            "a different torch than the one installed now; rebuild it after installing "
            f"torch=={TORCH_VERSION}:\n    {DETECTRON2_INSTALL}"
        ) from e


def check_torch_pair() -> None:
    """Run torchvision's nms and roi_align on CPU; raise with the versions when they fail."""
    import torch
    import torchvision

    try:
        from torchvision.ops import nms, roi_align

        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.1]])
        keep = nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
        assert keep.tolist() == [0], keep
        out = roi_align(torch.ones(1, 1, 8, 8), [boxes[:1]], output_size=(2, 2))
        assert out.shape == (1, 1, 2, 2), out.shape
    except Exception as e:  # noqa: BLE001  any failure here means a broken pair
        raise GNDetEnvironmentError(
            f"torchvision {torchvision.__version__} does not work with torch {torch.__version__}: "
            f"its CPU ops fail ({type(e).__name__}: {e}). Install the pinned pair: "
            f"python3 -m pip install 'torch==={TORCH_VERSION}' 'torchvision=={TORCHVISION_VERSION}' "
            "(not a '+cpu' torch, which has no matching torchvision), then rebuild detectron2."
        ) from e


def check_environment() -> dict:
    """All set-up checks; returns the versions found (printed by scripts/setup_env.sh)."""
    import torch
    import torchvision

    check_torch_pair()
    require_detectron2()
    import detectron2

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2.__version__,
        "cuda_available": torch.cuda.is_available(),
    }


def shell_pins() -> str:
    """The pins as shell assignments, for `eval "$(python3 gn_det/environment.py --print-pins)"`."""
    return "\n".join([
        f"TORCH_V={TORCH_VERSION}",
        f"VISION_V={TORCHVISION_VERSION}",
        f"D2_COMMIT={DETECTRON2_COMMIT}",
        f"D2_REPO={DETECTRON2_REPO}",
    ])


if __name__ == "__main__":
    # `python3 gn_det/environment.py`: the set-up script's check, usable before gn_det is installed
    # (this module imports nothing outside the standard library at load time).
    import sys

    if sys.argv[1:] == ["--print-pins"]:
        print(shell_pins())
        sys.exit(0)

    try:
        found = check_environment()
    except GNDetEnvironmentError as e:
        sys.exit(f"error: {e}")
    print("environment ok: " + ", ".join(f"{k} {v}" for k, v in found.items()))
