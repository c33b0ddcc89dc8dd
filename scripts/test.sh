#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on CPU. Extra arguments go to pytest.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_env.sh"
cd "$REPO"
echo "[test] python3 -m pytest tests $*"
exec "${PYTHON:-python3}" -m pytest tests -q -p no:cacheprovider "$@"
