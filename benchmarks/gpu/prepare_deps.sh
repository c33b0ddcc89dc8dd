#!/usr/bin/env bash
# Fills .gpu_deps/site (git-ignored) with what benchmarks/gpu/run.sh needs and a bare GPU image
# lacks: detectron2's Python code (its compiled _C replaced by a placeholder, see below),
# yacs, fvcore, iopath, omegaconf, hydra, antlr4 and termcolor as installed here (pure Python),
# and pycocotools' wheel for the GPU image's Python. Run it where gn_det's environment is
# installed (scripts/setup_env.sh) and PyPI is reachable:
#   bash benchmarks/gpu/prepare_deps.sh [PYTHON_VERSION]     # default 3.12, the GPU image's
# then carry .gpu_deps with the run (the device tool: carry=[".gpu_deps"]).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY_VERSION="${1:-3.12}"
DEST=.gpu_deps/site
rm -rf .gpu_deps
mkdir -p "$DEST" .gpu_deps/wheels
SITE="$(python3 -c 'import detectron2, os; print(os.path.dirname(os.path.dirname(detectron2.__file__)))')"
for pkg in detectron2 fvcore iopath yacs omegaconf hydra antlr4 termcolor; do
  (cd "$SITE" && find "$pkg" -name __pycache__ -prune -o -type f ! -name '*.so' -print) |
    while read -r file; do mkdir -p "$DEST/$(dirname "$file")" && cp "$SITE/$file" "$DEST/$file"; done
done
# detectron2's compiled ops are built against one Python and torch; the GPU image has others.
# Mask R-CNN R50-FPN does not use them (ROIAlign and NMS come from torchvision), but gn_det's
# import checks that `from detectron2 import _C` works. The placeholder makes that import work
# and makes any use of a compiled op (deformable conv, rotated boxes, the fast COCO evaluator)
# fail with this explanation.
cat > "$DEST/detectron2/_C.py" <<'PY'
"""Placeholder written by gn_det's benchmarks/gpu/prepare_deps.sh: detectron2's compiled ops are
not built for this machine. Mask R-CNN R50-FPN does not use them (ROIAlign and NMS come from
torchvision); deformable convolution, rotated boxes and the fast COCO evaluator would."""


class _NotBuilt(AttributeError):
    pass


def __getattr__(name):
    raise _NotBuilt(
        f"detectron2._C.{name}: detectron2's compiled ops are not built on this machine "
        "(benchmarks/gpu/prepare_deps.sh carried its Python code only)."
    )
PY
COCO_VERSION="$(python3 -c 'import importlib.metadata as m; print(m.version("pycocotools"))')"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu_deps/wheels "pycocotools==$COCO_VERSION"
python3 -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('$DEST') for w in glob.glob('.gpu_deps/wheels/*.whl')]"
du -sh .gpu_deps
