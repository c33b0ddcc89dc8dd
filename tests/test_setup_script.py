"""scripts/setup_env.sh installs detectron2 when it is missing, from a local clone/mirror named by
GN_DET_DETECTRON2_SRC or from its upstream git URL at the pinned commit, and stops with a clear
message when neither works.

The script runs for real, with PYTHON set to a shim around this interpreter that answers "missing"
to the script's detectron2 probe and records (instead of running) `pip install`, so that the tests
see exactly what the script would build without spending minutes building it. The real build from
a local clone was run by hand in a fresh venv (docs/install.md says how long it took)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gn_det.environment import DETECTRON2_COMMIT, DETECTRON2_REPO, shell_pins

REPO = Path(__file__).resolve().parents[1]

SHIM = """#!/usr/bin/env bash
# Test shim for $PYTHON in scripts/setup_env.sh.
case "$*" in
  *"find_spec('detectron2')"*) exit 1 ;;   # the script's "is detectron2 installed?" probe
esac
if [ "$1 $2 $3" = "-m pip install" ]; then
  last="${@: -1}"
  echo "pip $*" >> "$SHIM_LOG"
  if [ -d "$last" ]; then
    echo "head $(git -C "$last" rev-parse HEAD)" >> "$SHIM_LOG"
  fi
  exit "${SHIM_PIP_RC:-0}"
fi
exec "$REAL_PYTHON" "$@"
"""


def _run_setup(tmp_path, **env_extra):
    shim = tmp_path / "python_shim"
    shim.write_text(SHIM)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "shim.log"
    env = {k: v for k, v in os.environ.items() if k != "GN_DET_DETECTRON2_SRC"}
    env.update(PYTHON=str(shim), REAL_PYTHON=sys.executable, SHIM_LOG=str(log), TMPDIR=str(tmp_path))
    env.update(env_extra)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "setup_env.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    lines = log.read_text().splitlines() if log.exists() else []
    return proc, lines


def _local_detectron2_clone():
    """The installed detectron2's source tree when it is a git clone holding the pinned commit
    (how the test machines install it), else None."""
    import detectron2

    src = Path(detectron2.__file__).resolve().parents[1]
    ok = subprocess.run(["git", "-C", str(src), "cat-file", "-e", f"{DETECTRON2_COMMIT}^{{commit}}"],
                        capture_output=True).returncode == 0
    return src if ok else None


def test_pins_printed_for_the_script_are_the_ones_setup_py_uses():
    import gn_det.environment as env

    assert shell_pins().splitlines() == [
        f"TORCH_V={env.TORCH_VERSION}", f"VISION_V={env.TORCHVISION_VERSION}",
        f"D2_COMMIT={DETECTRON2_COMMIT}", f"D2_REPO={DETECTRON2_REPO}"]
    setup_py = (REPO / "setup.py").read_text()
    assert 'f"torch=={env.TORCH_VERSION}"' in setup_py
    assert 'f"torchvision=={env.TORCHVISION_VERSION}"' in setup_py
    script = (REPO / "scripts" / "setup_env.sh").read_text()
    assert "--print-pins" in script and "2.13" not in script  # no second copy of a pin


def test_missing_detectron2_is_built_from_the_local_clone_at_the_pinned_commit(tmp_path):
    src = _local_detectron2_clone()
    if src is None:
        pytest.skip("the installed detectron2 is not a git clone with the pinned commit")
    proc, log = _run_setup(tmp_path, GN_DET_DETECTRON2_SRC=str(src))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip = [line for line in log if line.startswith("pip ")]
    assert len(pip) == 1 and "--no-build-isolation" in pip[0], log
    assert f"head {DETECTRON2_COMMIT}" in log  # built from a checkout of the pinned commit
    assert f"{src} at the pinned commit {DETECTRON2_COMMIT[:12]}" in proc.stdout
    assert not list(tmp_path.glob("gn_det_detectron2.*"))  # scratch checkout removed after the build


def test_missing_detectron2_is_installed_from_the_upstream_git_url_without_a_local_source(tmp_path):
    proc, log = _run_setup(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert log == [f"pip -m pip install --quiet --no-build-isolation "
                   f"git+{DETECTRON2_REPO}@{DETECTRON2_COMMIT}"]


def test_failed_upstream_install_stops_and_names_the_offline_way(tmp_path):
    proc, _ = _run_setup(tmp_path, SHIM_PIP_RC="1")
    assert proc.returncode == 1
    assert "could not install detectron2 from " + DETECTRON2_REPO in proc.stdout
    assert "GN_DET_DETECTRON2_SRC=/path/to/detectron2 bash scripts/setup_env.sh" in proc.stdout


def test_local_source_that_does_not_exist_stops_with_its_name(tmp_path):
    missing = tmp_path / "no_such_clone"
    proc, log = _run_setup(tmp_path, GN_DET_DETECTRON2_SRC=str(missing))
    assert proc.returncode == 1 and log == []
    assert f"GN_DET_DETECTRON2_SRC={missing} is not a directory" in proc.stdout


def test_local_clone_without_the_pinned_commit_stops_and_says_so(tmp_path):
    clone = tmp_path / "other_detectron2"
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    (clone / "setup.py").write_text("")
    subprocess.run(git + ["add", "setup.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "not detectron2"], check=True)
    proc, log = _run_setup(tmp_path, GN_DET_DETECTRON2_SRC=str(clone))
    assert proc.returncode == 1 and log == []
    assert f"{clone} has no commit {DETECTRON2_COMMIT}" in proc.stdout
