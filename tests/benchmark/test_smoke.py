"""tools/benchmark.py end to end: --quick writes the JSON and tables (fields checked, not timings)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "benchmark.py")
METRICS = ("train_step_s", "inference_s_per_image", "train_peak_memory_mib", "inference_peak_memory_mib")


def _run(args, timeout):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, TOOL] + args, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = _run(["--quick", "--device", "cpu", "--output", str(out / "r.json"),
                 "--markdown", str(out / "r.md")], timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "r.json") as f:
        result = json.load(f)
    return result, (out / "r.md").read_text(), proc.stdout, out / "r.json"


@pytest.mark.slow
def test_quick_json_has_every_variant_row_metric_and_ratio(quick_run):
    result, *_ = quick_run
    assert result["schema"] == "gn_det.benchmark/1"
    assert result["settings"]["quick"] is True
    assert list(result["variants"]) == ["a", "b", "c", "d"]
    assert result["device"]["type"] == "cpu" and result["device"]["name"]
    rows = result["rows"]
    assert [(r["image_size"], r["images_per_batch"]) for r in rows] == [
        ([128, 192], 1), ([128, 192], 2), ([96, 160], 2)]
    assert [r["main"] for r in rows] == [False, True, False]
    for row in rows:
        for key in "abcd":
            res = row["results"][key]
            for metric in ("train_step_s", "inference_s_per_image"):
                assert res[metric]["min"] <= res[metric]["median"] <= res[metric]["max"]
                assert len(res[metric]["samples"]) == result["settings"]["repeats"]
        assert set(row["ratios"]["to_a"]) == {"b", "c", "d"}
        assert set(row["ratios"]["c_to_b"]) == set(METRICS)
        assert set(row["ratios"]["to_a_paired"]) == {"b", "c", "d"}
        assert set(row["ratios"]["c_to_b_paired"]) == {"train_step_s", "inference_s_per_image"}
    main = rows[1]
    for key in "abcd":
        assert main["results"][key]["train_peak_memory_mib"]["median"] > 0
        assert main["results"][key]["inference_peak_memory_mib"]["median"] > 0
    assert all(v is not None for v in main["ratios"]["c_to_b"].values())


@pytest.mark.slow
def test_quick_json_states_the_fixed_workload(quick_run):
    result, *_ = quick_run
    w = result["workload"]
    assert (w["rois_per_image"], w["positive_rois_per_image"]) == (32, 8)
    assert w["detections_per_image"] == 8 and w["mask_format"] == "polygon"


@pytest.mark.slow
def test_quick_json_has_the_layer_section(quick_run):
    result, *_ = quick_run
    layers = result["layers"]
    assert layers["function"] == "gn_det.benchmark.layer_timing.benchmark_group_norm"
    wheres = {w for s in layers["shapes"] for w in s["where"]}
    assert {"res2 (train)", "fpn (train)", "box_head (train)", "mask_head (inference)"} <= wheres
    for shape in layers["shapes"]:
        assert shape["copy_gbps"] > 0 and shape["calls_per_step"] >= 1
        for key in ("torch_train_ms", "fused_train_ms", "fused_train_fraction_of_copy",
                    "torch_infer_fraction_of_copy"):
            assert shape[key] > 0
    assert set(layers["totals_ms"]) == {"torch_infer_ms", "fused_infer_ms", "torch_train_ms",
                                        "fused_train_ms"}


@pytest.mark.slow
def test_quick_prints_the_tables(quick_run):
    _, markdown, stdout, _ = quick_run
    assert markdown in stdout
    assert "| (c) gn_det GN |" in markdown and "× (a)" in markdown
    assert "### Scaling" in markdown and "### GN+ReLU layers" in markdown


@pytest.mark.slow
def test_from_json_reprints_the_same_tables_without_measuring(quick_run):
    _, markdown, _, path = quick_run
    proc = _run(["--from-json", str(path)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == markdown + "\n"


def test_bad_image_size_is_refused_before_any_work():
    proc = _run(["--sizes", "480by800"], timeout=120)
    assert proc.returncode == 2
    assert "image size must be HxW, e.g. 480x800; got '480by800'" in proc.stderr


def test_main_images_outside_the_list_is_refused():
    proc = _run(["--ims", "1", "4", "--main-ims", "2", "--device", "cpu"], timeout=120)
    assert proc.returncode == 2
    assert "main_images_per_batch=2 must be one of images_per_batch=[1, 4]" in proc.stderr
