#!/usr/bin/env bash
# Fills .gpu_deps/site (git-ignored) with what benchmarks/gpu/run.sh needs and a bare GPU image
# lacks: detectron2's Python code (without its compiled _C, which Mask R-CNN does not use),
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
COCO_VERSION="$(python3 -c 'import importlib.metadata as m; print(m.version("pycocotools"))')"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu_deps/wheels "pycocotools==$COCO_VERSION"
python3 -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('$DEST') for w in glob.glob('.gpu_deps/wheels/*.whl')]"
du -sh .gpu_deps
