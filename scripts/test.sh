#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on CPU. Extra arguments go to pytest.
# The suite runs on every core with pytest-xdist, a test file per worker at a time (`--dist
# loadfile`, so a module's shared fixtures are built once); GN_DET_TEST_WORKERS=0 runs it in one
# process.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/setup_env.sh"
cd "$REPO"
WORKERS="${GN_DET_TEST_WORKERS:-auto}"
if [ "$WORKERS" = "0" ]; then PARALLEL=(); else PARALLEL=(-n "$WORKERS" --dist loadfile); fi
echo "[test] python3 -m pytest tests ${PARALLEL[*]} $*"
exec "${PYTHON:-python3}" -m pytest tests -q -p no:cacheprovider "${PARALLEL[@]}" "$@"
