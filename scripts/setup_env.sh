#!/usr/bin/env bash
# Idempotent set-up for gn_det, sourced by scripts/main.sh and scripts/test.sh.
# Installs what is missing (the pinned torch/torchvision pair, setuptools<81, gn_det itself in
# editable mode with its PyPI dependencies, detectron2 at the pinned commit when it is missing), checks
# that the pair's ops and detectron2's compiled ops work, and stops with instructions when detectron2
# cannot be installed. Skips whatever is already right.
#
# detectron2 is not on PyPI. When it is missing it is built from source, after torch and without
# build isolation (its INSTALL.md): from GN_DET_DETECTRON2_SRC when set (a local clone, a bare
# mirror, or an unpacked source tree: for machines without internet), else from its upstream git
# repository at the pinned commit.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
say() { echo "[setup] $*"; }

# The pins live in gn_det/environment.py (TORCH_V, VISION_V, D2_COMMIT, D2_REPO).
eval "$($PY "$REPO/gn_det/environment.py" --print-pins)"

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

detectron2_present() {
  (cd /tmp && $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('detectron2') is None)")
}

# Build detectron2 from $1 (a directory with its setup.py) against the installed torch.
build_detectron2() {
  say "building detectron2 from $1 (about 2-5 minutes)"
  $PY -m pip install --quiet --no-build-isolation "$1"
}

install_detectron2_from_local() {
  local src="$GN_DET_DETECTRON2_SRC"
  if [ ! -d "$src" ]; then
    say "error: GN_DET_DETECTRON2_SRC=$src is not a directory"; return 1
  fi
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    # A clone or a bare mirror: check the pinned commit out into a scratch work tree, so that a
    # user's own clone is left as it is.
    if ! git -C "$src" cat-file -e "${D2_COMMIT}^{commit}" 2>/dev/null; then
      say "error: $src has no commit $D2_COMMIT (the pinned detectron2); fetch it there first"
      return 1
    fi
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/gn_det_detectron2.XXXXXX")"
    git clone --quiet --no-checkout "$src" "$work/detectron2"
    git -C "$work/detectron2" checkout --quiet "$D2_COMMIT"
    say "detectron2 source: $src at the pinned commit ${D2_COMMIT:0:12}"
    build_detectron2 "$work/detectron2" && rm -rf "$work"
  elif [ -f "$src/setup.py" ]; then
    say "warning: $src is not a git repository; building it as it is (its commit cannot be checked against ${D2_COMMIT:0:12})"
    build_detectron2 "$src"
  else
    say "error: GN_DET_DETECTRON2_SRC=$src is neither a git repository nor a source tree with setup.py"
    return 1
  fi
}

if detectron2_present; then
  say "detectron2 already installed"
elif [ -n "${GN_DET_DETECTRON2_SRC:-}" ]; then
  install_detectron2_from_local || {
    say "error: could not install detectron2 from GN_DET_DETECTRON2_SRC=$GN_DET_DETECTRON2_SRC (see above)"
    exit 1
  }
else
  say "detectron2 is missing: installing it from $D2_REPO at ${D2_COMMIT:0:12}"
  if ! $PY -m pip install --quiet --no-build-isolation "git+$D2_REPO@$D2_COMMIT"; then
    say "error: could not install detectron2 from $D2_REPO (no internet, or no git?)."
    say "  Without internet, clone or mirror detectron2 on a machine that has it, copy it here and run:"
    say "    GN_DET_DETECTRON2_SRC=/path/to/detectron2 bash scripts/setup_env.sh"
    exit 1
  fi
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
    [ -z "$(find "$REPO/gn_det/csrc" "$REPO/setup.py" -newer "$so" -type f)" ]
  fi
}

if (cd /tmp && $PY -c "import gn_det, os, sys; sys.exit(os.path.dirname(os.path.dirname(gn_det.__file__)) != sys.argv[1])" "$REPO" 2>/dev/null) \
   && $PY -c "import pytest, xdist, pycocotools, cv2, fvcore, onnx, onnxscript, onnxruntime" 2>/dev/null && kernels_current; then
  say "gn_det already installed (editable) from $REPO"
else
  # The export extra too: the tests run exported ONNX models in onnxruntime.
  say "installing gn_det (editable) with its test and export extras"
  (cd "$REPO" && $PY -m pip install --quiet --no-build-isolation -e ".[test,export]")
fi
if (cd /tmp && $PY -c "import sys; from gn_det.layers import cpu_kernels_available; sys.exit(not cpu_kernels_available())" 2>/dev/null); then
  say "fused GroupNorm CPU kernels: built (gn_det._C)"
else
  say "fused GroupNorm CPU kernels: not built (no C++ compiler?); the fused op runs on PyTorch's kernels"
fi
say "done"
