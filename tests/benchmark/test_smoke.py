"""tools/benchmark.py end to end: every sub-command once on tiny settings (fields checked, not
timings). The three runs start together (they are independent processes), so the module costs
about the slowest of them; argument errors are checked in-process, before any work."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "benchmark.py")
TINY_MODEL = ["--quick", "--device", "cpu", "--variants", "a", "c", "--sizes", "64x96", "--ims", "1",
              "--main-ims", "1", "--warmup", "0", "--repeats", "1", "--freeze-at", "0",
              "--threads", "1", "--arch", "R18-FPN", "--no-memory", "--layer-size", "64x96", "--layer-repeats", "1"]


def _start(args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, TOOL] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    procs = {
        # No sub-command: the command line from before sub-commands existed is `model`.
        "model": _start(TINY_MODEL + ["--output", str(out / "m.json"), "--markdown", str(out / "m.md")]),
        "layers": _start(["layers", "--device", "cpu", "--only", "FPN P5", "--repeats", "1",
                          "--rois", "8"]),
        # --no-memory: its fresh-process target is tested in-process below (each fresh process
        # costs ~6 s of CPU importing torch and Detectron2; `layers` runs two of them).
        "validation": _start(["validation", "--images", "3", "--per-image", "2", "--save-repeats", "1",
                              "--no-memory", "--dir", str(out / "v"), "--output", str(out / "v.json")]),
    }
    done = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
        done[name] = stdout
    with open(out / "m.json") as f:
        model = json.load(f)
    with open(out / "v.json") as f:
        validation = json.load(f)
    return {"model": model, "model_md": (out / "m.md").read_text(), "model_json": out / "m.json",
            "validation": validation, **{f"{k}_stdout": v for k, v in done.items()}}


def _tool_main(argv):
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


@pytest.mark.slow
def test_model_json_has_every_variant_row_metric_and_ratio(runs):
    result = runs["model"]
    assert result["schema"] == "gn_det.benchmark/1" and result["settings"]["quick"] is True
    assert list(result["variants"]) == ["a", "c"]
    assert result["device"]["type"] == "cpu" and result["device"]["name"]
    [row] = result["rows"]
    assert (row["image_size"], row["images_per_batch"], row["main"]) == ([64, 96], 1, True)
    for key in "ac":
        for metric in ("train_step_s", "inference_s_per_image"):
            res = row["results"][key][metric]
            assert res["min"] <= res["median"] <= res["max"] and len(res["samples"]) == 1
        assert row["results"][key]["train_peak_memory_mib"] is None  # --no-memory
    assert set(row["ratios"]["to_a"]) == {"c"} and set(row["ratios"]["to_a_paired"]) == {"c"}
    assert row["ratios"]["to_a"]["c"]["train_step_s"] > 0


@pytest.mark.slow
def test_model_records_freeze_at_and_threads(runs):
    result = runs["model"]
    assert [r["freeze_at"] for r in result["rows"]] == [0]
    assert result["settings"]["freeze_at"] == [0]
    assert result["device"]["threads"] == result["settings"]["threads"] == 1
    assert result["variants"]["c"]["config"]["MODEL.RESNETS.NORM"] == "GN"


@pytest.mark.slow
def test_model_records_the_architecture(runs):
    result = runs["model"]
    assert result["settings"]["arch"] == "R18-FPN" and [r["arch"] for r in result["rows"]] == ["R18-FPN"]
    assert result["variants"]["c"]["config"]["MODEL.RESNETS.DEPTH"] == 18
    assert "### Mask R-CNN R18-FPN 4conv1fc" in runs["model_md"]


@pytest.mark.slow
def test_model_json_has_the_layer_section(runs):
    layers = runs["model"]["layers"]
    assert layers["function"] == "gn_det.benchmark.layer_timing.benchmark_group_norm"
    assert layers["shapes_from"]["variant"] == "b"  # Detectron2's GN model, even when not timed
    wheres = {w for s in layers["shapes"] for w in s["where"]}
    assert {"res2 (train)", "fpn (train)", "box_head (train)", "mask_head (inference)"} <= wheres
    for shape in layers["shapes"]:
        assert shape["copy_gbps"] > 0 and shape["calls_per_step"] >= 1
        assert shape["fused_train_ms"] > 0 and shape["torch_train_fraction_of_copy"] > 0


@pytest.mark.slow
def test_model_prints_the_tables(runs):
    markdown = runs["model_md"]
    assert markdown in runs["model_stdout"]
    assert "| (c) gn_det GN |" in markdown and "× (a)" in markdown and "FREEZE_AT 0" in markdown
    assert "### Scaling" in markdown and "### GN+ReLU layers" in markdown


@pytest.mark.slow
def test_from_json_reprints_the_same_tables_without_measuring(runs, capsys):
    assert _tool_main(["model", "--from-json", str(runs["model_json"])]) == 0
    assert capsys.readouterr().out == runs["model_md"] + "\n"


@pytest.mark.slow
def test_layers_prints_the_layer_table_and_the_box_head_comparison(runs):
    out = runs["layers_stdout"]
    assert "| FPN P5 | 2x256x25x42 |" in out
    assert "GN box head (Detectron2's FastRCNNConvFCHead), 8 RoIs" in out
    for label in ("kept for backward (MiB)", "peak of a training step (MiB)", "training step (ms)"):
        assert f"| {label} |" in out


@pytest.mark.slow
def test_validation_measures_throughput_and_checkpoint_saves(runs):
    result = runs["validation"]
    for mode in ("headers_skipped", "headers_checked"):
        row = result["coco"][mode]
        assert row["annotations"] == 6 and row["wall_s"] > 0 and "peak_memory_mib" not in row
    save = result["checkpoint_save"]
    assert save["repeats"] == 1 and save["plain_s"] > 0 and save["safe_s"] > 0
    assert save["state_dict_mib"] > 100  # a GN Mask R-CNN R50-FPN
    assert "SafeDetectionCheckpointer (temp, fsync, rename)" in runs["validation_stdout"]


def test_bad_image_size_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_:
        _tool_main(["--sizes", "480by800"])
    assert exit_.value.code == 2
    assert "image size must be HxW, e.g. 480x800; got '480by800'" in capsys.readouterr().err


def test_main_images_outside_the_list_is_refused(capsys):
    assert _tool_main(["model", "--ims", "1", "4", "--main-ims", "2", "--device", "cpu"]) == 2
    assert "main_images_per_batch=2 must be one of images_per_batch=[1, 4]" in capsys.readouterr().err


def test_freeze_at_outside_the_stages_is_refused(capsys):
    assert _tool_main(["model", "--freeze-at", "2", "7", "--device", "cpu"]) == 2
    assert "MODEL.BACKBONE.FREEZE_AT values 0..5, got [2, 7]" in capsys.readouterr().err


def test_validation_memory_target_meters_the_check(tmp_path):
    from gn_det.benchmark.memory import PeakMemory
    from gn_det.benchmark.validation_cost import coco_validation_memory, make_dataset

    json_file = make_dataset(str(tmp_path), n_images=2, per_image=2)
    meter = PeakMemory("cpu")
    assert coco_validation_memory(meter, json_file, str(tmp_path / "images"), True) == {"ok": True}
    assert meter.result()["baseline_bytes"] > 0  # the target started the meter itself
