"""tools/validate.py: exit status and a report that names every culprit."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "validate.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_validate_tool_reports_all_problems_and_fails(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "MODEL:\n  FPN:\n    NROM: GN\nSOLVER:\n  IMS_PER_BATCH: 3\n"
    )
    (tmp_path / "bad.json").write_text('{"images": [')
    result = _run(
        [
            "--config-file",
            "bad.yaml",
            "--num-gpus",
            "2",
            "--coco-json",
            "bad.json",
            ".",
            "--checkpoint",
            "missing.pth",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ],
        tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "bad.yaml:3: MODEL.FPN.NROM is not a config key" in output
    assert (
        "SOLVER.IMS_PER_BATCH: 3 images per batch cannot be split evenly over 2 processes" in output
    )
    assert "bad.json: not valid JSON" in output and "truncated" in output
    assert "missing.pth: no such file" in output
    written = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert not written["ok"] and {p["kind"] for p in written["problems"]} >= {
        "unknown-key",
        "batch-size",
    }
