"""The COCO-scale benchmarks' own logic, without the COCO-sized runs: how a train command's
first iteration is timed, how results are compared with pycocotools', and the command line."""
import json
import sys

import pytest

from gn_det.benchmark.coco_eval_bench import _max_difference, _variants
from gn_det.benchmark.startup_bench import _with_baseline, first_iteration_run, format_markdown

FAKE_TRAIN = """
import time, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(50 * 2**20); time.sleep(1.5)"])
print("Command Line Args: ...", flush=True)
time.sleep(0.4)
print("[12/06 10:00:00 d2.engine.train_loop]: Starting training from iteration 0", flush=True)
time.sleep(0.4)
print("[12/06 10:00:01 fvcore.common.checkpoint]: Saving checkpoint to out/model_final.pth", flush=True)
child.wait()
"""


def test_first_iteration_is_timed_from_the_log_and_memory_covers_child_processes(tmp_path):
    run = first_iteration_run([sys.executable, "-c", FAKE_TRAIN], {}, str(tmp_path / "log"), timeout_s=60)
    assert run["returncode"] == 0 and run["error"] is None
    assert 0.3 < run["training_starts_s"] < run["first_iteration_s"] < run["exit_s"]
    assert run["first_iteration_s"] - run["training_starts_s"] >= 0.35
    assert run["peak_pss_mib"] > 50  # the child's 50 MiB buffer is counted
    assert "Starting training" in (tmp_path / "log").read_text()


def test_a_refused_run_reports_its_error_line(tmp_path):
    code = "raise ValueError(\"dataset 'x' in DATASETS.TRAIN has mixed masks\")"
    run = first_iteration_run([sys.executable, "-c", code], {}, str(tmp_path / "log"), timeout_s=60)
    assert run["returncode"] == 1 and run["first_iteration_s"] is None
    assert run["error"] == "ValueError: dataset 'x' in DATASETS.TRAIN has mixed masks"


def test_a_baseline_checkout_runs_every_gn_det_row_again_and_is_compared_with_the_same_detectron2_row(tmp_path):
    rows = {"detectron2 tools/train_net.py, 1 process(es)": ("d2", "now"),
            "gn_det tools/train_net.py, 1 process(es)": ("gn", "now")}
    both = _with_baseline(rows, str(tmp_path))
    baseline_name = f"gn_det tools/train_net.py, 1 process(es) [baseline {tmp_path.name}]"
    assert list(both) == list(rows) + [baseline_name] and both[baseline_name] == ("gn", str(tmp_path))

    def run(first):
        return [{"training_starts_s": first - 1, "first_iteration_s": first, "peak_pss_mib": 100.0, "error": None,
                 "returncode": 0}]

    table = format_markdown({"startup": {"detectron2 tools/train_net.py, 1 process(es)": run(10.0),
                                         "gn_det tools/train_net.py, 1 process(es)": run(11.0),
                                         baseline_name: run(15.0)}, "load_before": [0], "load_after": [0]})
    assert "| 11.0 | 1.10 |" in table and "| 15.0 | 1.50 |" in table


def test_differences_from_pycocotools_count_every_number_both_have():
    reference = {"stats": [50.0] * 6 + [60.0] * 6, "per_category": {"a": 40.0, "b": None}}
    same = {"stats": [50.0] * 6 + [60.0] * 6, "per_category": {"a": 40.0, "b": None}}
    assert _max_difference(same, reference) == 0
    off = {"stats": [50.0] * 6 + [60.0] * 6, "per_category": {"a": 40.02, "b": None}}
    assert _max_difference(off, reference) == pytest.approx(0.02)
    detectron2 = {"stats": [50.0] * 6 + [None] * 6, "per_category": {"a": 40.0, "b": None}}
    assert _max_difference(detectron2, reference) == 0  # it reports no AR numbers
    lost = {"stats": [50.0] * 6 + [60.0] * 6, "per_category": {"a": None, "b": None}}
    assert _max_difference(lost, reference) == float("inf")


def test_implementation_names_with_worker_counts():
    assert _variants(["gn_det", "gn_det-w4", "detectron2"]) == [
        ("gn_det", "gn_det", 0), ("gn_det-w4", "gn_det", 4), ("detectron2", "detectron2", 1)]
    with pytest.raises(ValueError, match="'fast'; valid: pycocotools, detectron2, gn_det, faster_coco_eval"):
        _variants(["fast"])


def test_coco_data_command_writes_both_splits_and_the_detections(tmp_path, capsys):
    from gn_det.cli.benchmark import main

    assert main(["coco-data", "--dir", str(tmp_path), "--scale", "0.0004"]) == 0
    root = tmp_path / "scale_0.0004"
    train = json.loads((root / "coco" / "annotations" / "instances_train2017.json").read_text())
    assert (len(train["images"]), len(train["annotations"])) == (47, 344)
    assert len(list((root / "coco" / "val2017").iterdir())) == 2
    assert len(json.loads((root / "detections_val2017.json").read_text())) == 200
    assert "train2017: 47 images, 344 annotations" in capsys.readouterr().out
