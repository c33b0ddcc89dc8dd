"""gn_det as a wheel installed elsewhere (scripts/check_install.py, pure-Python wheel): the
configs and the commands work from any directory, from the installed copy only."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_serves_configs_and_commands_from_any_directory():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_install.py"), "--no-cpu-kernels"],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("the wheel holds", "gn_det from", "YAML and .py configs build the same model on CPU",
                 "CPU kernels not built", "gn-det-train --help runs"):
        assert step in result.stdout, step
