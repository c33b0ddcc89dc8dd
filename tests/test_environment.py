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
