"""The prepared GPU run (benchmarks/gpu/run.sh) dry-run on CPU with tiny shapes: every step runs
through the same code a GPU run takes and writes its results as it goes, within the device
tool's limits on what comes back (at most 8 files)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[2]
STEPS = ["environment", "precompile", "correctness", "layers", "models"]


def _run_gpu_module():
    # By path: the script puts the repository on sys.path itself, however pytest was started.
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_gpu", REPO / "benchmarks" / "gpu" / "run_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dry_run_completes_every_step_and_writes_its_results(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run(["bash", "benchmarks/gpu/run.sh", "--dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [results["steps"][name]["status"] for name in STEPS] == ["ok"] * len(STEPS)
    correctness = results["steps"]["correctness"]
    assert correctness["kernel_tests"]["returncode"] == 0 and "1 passed" in correctness["kernel_tests"]["summary"]
    step = correctness["model_step"]
    assert step["compared"] > 50 and step["within_tolerance"] == step["compared"]
    layers = results["steps"]["layers"]["rows"]
    assert {r["path"] for r in layers} == {"whole groups", "split groups"}
    assert all(r["fused_train_ms"] > 0 and r["copy_gbps"] > 0 for r in layers)
    assert [(r["variant"], r["dtype"]) for r in results["steps"]["models"]["rows"]] == [
        ("(b) Detectron2 GN", "fp32"), ("(d) gn_det GN+WS", "fp32"), ("(c) gn_det GN", "bf16")]
    page = (tmp_path / "results.md").read_text()
    assert "## GN+ReLU layers" in page and "## Whole models" in page and "within the CPU tests' tolerance" in page
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["log.txt", "results.json", "results.md", "triton_tests.txt"]


def test_a_failing_step_is_recorded_and_the_next_steps_still_run(tmp_path, monkeypatch):
    run_gpu = _run_gpu_module()

    def broken(run, record, settings):
        record["partial"] = "kept"
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(run_gpu, "STEPS", (("environment", run_gpu.environment), ("layers", broken),
                                           ("models", lambda run, record, settings: None)))
    assert run_gpu.main(["--dry-run", "--out", str(tmp_path), "--steps", "environment", "layers", "models"]) == 1
    steps = json.loads((tmp_path / "results.json").read_text())["steps"]
    assert [steps[n]["status"] for n in ("environment", "layers", "models")] == ["ok", "error", "ok"]
    assert steps["layers"]["partial"] == "kept" and "simulated failure" in steps["layers"]["error"]


def test_a_spent_budget_skips_the_remaining_steps(tmp_path):
    run_gpu = _run_gpu_module()
    assert run_gpu.main(["--dry-run", "--out", str(tmp_path), "--budget-s", "0"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["status"] for r in results["steps"].values()} == {"skipped: time budget spent"}
    assert "| models | skipped: time budget spent |" in (tmp_path / "results.md").read_text()
