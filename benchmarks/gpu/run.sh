#!/usr/bin/env bash
# The prepared GPU run of the fused GN kernels (docs/fused_gn.md, "On a GPU"): correctness,
# GN layer timings, whole-model timings and memory. Results in $OUT (the device tool sets it;
# default ./gpu_results): results.json, results.md, log.txt, triton_tests.txt.
#   bash benchmarks/gpu/run.sh               on a GPU machine (~5-6 min on one H100)
#   bash benchmarks/gpu/run.sh --dry-run     on CPU with tiny shapes (a test in the suite runs it)
# Packages a bare GPU image lacks (detectron2's Python code, yacs, fvcore, ...) travel in
# .gpu_deps/site, which benchmarks/gpu/prepare_deps.sh fills on a machine that has them.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu_results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OUT
# After site-packages (run_gpu.py appends it to sys.path): what is installed here always wins.
[ -d .gpu_deps/site ] && export GN_DET_GPU_DEPS="$PWD/.gpu_deps/site"
python3 benchmarks/gpu/run_gpu.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
