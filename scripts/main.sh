#!/usr/bin/env bash
# Set up (idempotent) and run gn_det's main job on CPU.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_env.sh"
cd "$REPO"
echo "[main] python3 tools/smoke_train.py"
exec "${PYTHON:-python3}" tools/smoke_train.py "$@"
