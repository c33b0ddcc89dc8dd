import subprocess
import sys

from gn_det.environment import DETECTRON2_COMMIT, check_environment


def test_environment_check_passes_here():
    found = check_environment()
    assert found["torch"].startswith("2.13.0") and found["torchvision"].startswith("0.28.0")


def test_import_without_detectron2_fails_at_once_with_instructions():
    # Hide detectron2 from the import system in a fresh interpreter.
    code = "import sys; sys.modules['detectron2'] = None; import gn_det"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "gn_det needs detectron2" in proc.stderr
    assert f"detectron2.git@{DETECTRON2_COMMIT}" in proc.stderr
    assert "GNDetEnvironmentError" in proc.stderr  # our error, not a traceback from deep inside


def test_setup_py_refuses_to_install_into_a_python_without_detectron2(tmp_path):
    # A fresh venv has setuptools but no detectron2; installing gn_det there must stop with the
    # instructions instead of producing a gn_det that cannot be imported.
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "setup.py", "develop", "--dry-run"],
        cwd=repo, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "gn_det needs detectron2" in proc.stderr
    assert DETECTRON2_COMMIT in proc.stderr
