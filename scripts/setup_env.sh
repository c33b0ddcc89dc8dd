#!/usr/bin/env bash
# Idempotent set-up for gn_det, sourced by scripts/main.sh and scripts/test.sh.
# Installs what is missing (the pinned torch/torchvision pair, setuptools<81, gn_det itself in
# editable mode with its PyPI dependencies), checks that the pair's ops and detectron2's compiled
# ops work, and stops with instructions when detectron2 is missing. Skips whatever is already right.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
say() { echo "[setup] $*"; }

TORCH_V=2.13.0
VISION_V=0.28.0

say "python: $($PY -c 'import sys; print(sys.executable, sys.version.split()[0])')"

if $PY - "$TORCH_V" "$VISION_V" <<'PYCHECK'
import sys
try:
    import torch, torchvision
except ImportError:
    sys.exit(1)
ok = (torch.__version__.split("+")[0] == sys.argv[1] and not torch.__version__.endswith("+cpu")
      and torchvision.__version__.split("+")[0] == sys.argv[2])
sys.exit(0 if ok else 1)
PYCHECK
then
  say "torch $TORCH_V / torchvision $VISION_V already installed"
else
  # '===' keeps pip from taking a local '+cpu' torch wheel, which has no matching torchvision.
  say "installing torch===$TORCH_V torchvision==$VISION_V"
  $PY -m pip install --quiet "torch===$TORCH_V" "torchvision==$VISION_V"
fi

if $PY -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) >= 81)"; then
  say "setuptools $($PY -c 'import setuptools; print(setuptools.__version__)') provides pkg_resources"
else
  say "installing setuptools<81 (detectron2.model_zoo imports pkg_resources)"
  $PY -m pip install --quiet "setuptools<81"
fi

say "checking torch/torchvision ops and detectron2"
$PY "$REPO/gn_det/environment.py"

# gn_det's C++ CPU kernels (gn_det/csrc) are built by the editable install: rebuild when a source
# is newer than the built library, unless there is no C++ compiler to build them with.
kernels_current() {
  local so
  so="$(ls "$REPO"/gn_det/_C*.so 2>/dev/null | head -n 1)"
  if [ -z "$so" ]; then
    ! command -v "${CXX:-c++}" >/dev/null 2>&1
  else
    [ -z "$(find "$REPO/gn_det/csrc" -newer "$so" -type f)" ]
  fi
}

if (cd /tmp && $PY -c "import gn_det, os, sys; sys.exit(os.path.dirname(os.path.dirname(gn_det.__file__)) != sys.argv[1])" "$REPO" 2>/dev/null) \
   && $PY -c "import pytest, pycocotools, cv2, fvcore" 2>/dev/null && kernels_current; then
  say "gn_det already installed (editable) from $REPO"
else
  say "installing gn_det (editable) with its test extras"
  (cd "$REPO" && $PY -m pip install --quiet --no-build-isolation -e ".[test]")
fi
if (cd /tmp && $PY -c "import sys; from gn_det.layers import cpu_kernels_available; sys.exit(not cpu_kernels_available())" 2>/dev/null); then
  say "fused GroupNorm CPU kernels: built (gn_det._C)"
else
  say "fused GroupNorm CPU kernels: not built (no C++ compiler?); the fused op runs on PyTorch's kernels"
fi
say "done"
