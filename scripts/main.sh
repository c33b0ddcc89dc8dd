#!/usr/bin/env bash
# Set up (idempotent), then gn_det's main job on CPU: train a small GN Mask R-CNN (R18-FPN) from
# scratch on the embedded synthetic shapes dataset, evaluate it on the val split and print the
# box/mask AP table. Extra arguments are config overrides (KEY VALUE), e.g. SOLVER.MAX_ITER 100.
# GN_DET_MAIN_OUTPUT sets the output directory (default output/main); GN_DET_MAIN_PROCESSES the
# number of CPU training processes (default: one per core, at most 2, one thread each).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_env.sh"
cd "$REPO"

OUTPUT="${GN_DET_MAIN_OUTPUT:-output/main}"
CORES="$(nproc)"
PROCESSES="${GN_DET_MAIN_PROCESSES:-$(( CORES >= 2 ? 2 : 1 ))}"
# The job is a CPU job (MODEL.DEVICE cpu); launch() would start one process per *GPU* if it saw one.
if "${PYTHON:-python3}" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  PROCESSES=1
fi
# One thread per process: OpenMP threads that outnumber free cores slow convolutions many times
# over on a small shared machine; separate processes (Gloo) use the cores without that cost.
export OMP_NUM_THREADS=1
START=$SECONDS
echo "[main] $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg), $CORES cores"
set -x
"${PYTHON:-python3}" tools/train_net.py \
  --config-file configs/Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml \
  --num-gpus "$PROCESSES" --dist-url auto \
  OUTPUT_DIR "$OUTPUT" "$@"
{ set +x; } 2>/dev/null
echo
echo "[main] box and mask AP on gn_det_shapes_val ($OUTPUT/ap_report.md):"
echo
cat "$OUTPUT/ap_report.md"
echo "[main] done in $(( SECONDS - START )) s (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
