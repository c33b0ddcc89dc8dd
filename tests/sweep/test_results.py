"""Sweep outputs from cell directories (no training): statuses, sweep.json, table, plot, resume rules."""

import json
import os

import cv2
import pytest
from detectron2.config import get_cfg

from gn_det import add_gn_config
from gn_det.evaluation import build_ap_report, write_ap_report
from gn_det.sweep import runner
from gn_det.sweep.cli import sweep_main
from gn_det.sweep.plan import plan_sweep
from gn_det.sweep.results import collect_runs, format_sweep_markdown, summarize_cells, write_sweep_outputs
from gn_det.sweep.runner import ConfigChangedError, prepare_run_dir, run_sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GN_1X = os.path.join(REPO, "configs", "COCO-InstanceSegmentation", "mask_rcnn_R_50_FPN_1x_gn.yaml")
DATASET = "coco_2017_val"


def base_cfg(max_iter=40):
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(GN_1X)
    cfg.MODEL.WEIGHTS = ""
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.REFERENCE_WORLD_SIZE = 4, 1
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS = max_iter, (max_iter // 2,)
    cfg.DATASETS.TEST = (DATASET,)
    return cfg


def write_report(run, bbox_ap, segm_ap, iteration=None):
    metrics = lambda ap: {"AP": ap, "AP50": ap + 10}  # noqa: E731
    report = build_ap_report(
        {DATASET: {"bbox": metrics(bbox_ap), "segm": metrics(segm_ap)}},
        class_names={DATASET: []},
        num_images={DATASET: 5},
        run={},
        iteration=run.cfg.SOLVER.MAX_ITER - 1 if iteration is None else iteration,
    )
    write_ap_report(report, run.output_dir)


def write_train_time(run, segments):
    with open(os.path.join(run.output_dir, "train_time.json"), "w") as f:
        json.dump([{"start_iter": a, "end_iter": b, "seconds": s} for a, b, s in segments], f)


@pytest.fixture
def sweep(tmp_path):
    """BN and GN at 1 and 4 images/GPU, seeds 0 and 1, every directory prepared."""
    runs = plan_sweep(base_cfg(), ["BN", "GN"], [1, 4], [0, 1], str(tmp_path))
    for r in runs:
        prepare_run_dir(r)
    return {r.cell.name: r for r in runs}


def test_status_ap_and_time_of_each_cell(sweep, tmp_path):
    gn = sweep["gn_1img_seed0"]
    write_report(gn, 20.0, 18.0)
    write_train_time(gn, [(0, 100, 50.0), (100, 160, 30.5)])  # interrupted once, resumed
    write_report(sweep["gn_1img_seed1"], 10.0, 9.0, iteration=99)  # a mid-training evaluation
    state = runner.load_run_state(sweep["bn_1img_seed0"].output_dir)
    state["attempts"].append({"wall_seconds": 12.0, "returncode": 1, "finished": False})
    with open(os.path.join(sweep["bn_1img_seed0"].output_dir, runner.RUN_STATE_NAME), "w") as f:
        json.dump(state, f)

    runs = {r["name"]: r for r in collect_runs(str(tmp_path))}
    assert len(runs) == 8
    g = runs["gn_1img_seed0"]
    assert (g["status"], g["bbox_AP"], g["segm_AP"], g["segm_AP50"]) == ("finished", 20.0, 18.0, 28.0)
    assert (g["train_seconds"], g["train_seconds_complete"]) == (80.5, True)
    assert (g["ims_per_batch"], g["max_iter"], g["images_seen"], g["dataset"]) == (1, 160, 160, DATASET)
    assert runs["gn_1img_seed1"]["status"] == "pending" and runs["gn_1img_seed1"]["bbox_AP"] is None
    assert runs["bn_1img_seed0"]["status"] == "failed" and runs["bn_1img_seed0"]["wall_seconds"] == 12.0


def test_train_time_with_a_gap_is_marked_partial(sweep, tmp_path):
    gn = sweep["gn_4img_seed0"]
    write_report(gn, 1.0, 1.0)
    write_train_time(gn, [(20, 40, 9.0)])  # the segment before the checkpoint at 20 was killed
    (entry,) = [r for r in collect_runs(str(tmp_path)) if r["name"] == "gn_4img_seed0"]
    assert (entry["train_seconds"], entry["train_seconds_complete"]) == (9.0, False)


def test_cells_summarize_seeds_as_mean_min_max(sweep, tmp_path):
    write_report(sweep["gn_1img_seed0"], 20.0, 18.0)
    write_report(sweep["gn_1img_seed1"], 24.0, 21.0)
    write_report(sweep["bn_4img_seed0"], 15.0, 12.0)
    cells = {(c["norm"], c["images_per_gpu"]): c for c in summarize_cells(collect_runs(str(tmp_path)))}
    assert cells[("GN", 1)]["segm_AP"] == {"mean": 19.5, "min": 18.0, "max": 21.0}
    assert cells[("GN", 1)]["bbox_AP"] == {"mean": 22.0, "min": 20.0, "max": 24.0}
    assert (cells[("GN", 1)]["num_seeds"], cells[("GN", 1)]["num_planned"]) == (2, 2)
    assert cells[("BN", 4)]["num_seeds"] == 1 and cells[("BN", 4)]["segm_AP"]["mean"] == 12.0
    assert cells[("BN", 1)]["num_seeds"] == 0 and cells[("BN", 1)]["segm_AP"] is None


def test_markdown_tables(sweep, tmp_path):
    write_report(sweep["gn_1img_seed0"], 20.0, 18.0)
    write_report(sweep["gn_1img_seed1"], 24.0, 21.0)
    write_report(sweep["bn_4img_seed0"], 15.0, 12.0)
    runs = collect_runs(str(tmp_path))
    text = format_sweep_markdown(
        {"sweep": {"norms": ["GN", "BN"]}, "runs": runs, "cells": summarize_cells(runs)}
    )
    lines = text.splitlines()
    mask = lines.index("| mask AP | 1 img/GPU | 4 img/GPU |")
    assert lines[mask + 2 : mask + 4] == ["| GN | 19.5 (18.0–21.0) | — |", "| BN | — | 12.0 |"]
    box = lines.index("| box AP | 1 img/GPU | 4 img/GPU |")
    assert lines[box + 2] == "| GN | 22.0 (20.0–24.0) | — |"
    assert "| gn_1img_seed1 | GN | 1 | 1 | finished | 1 | 0.005 | 160 | 24.0 | 21.0 | — | — |" in lines
    assert "| bn_1img_seed0 | BN | 1 | 0 | pending | 1 | 0.005 | 160 | — | — | — | — |" in lines


def test_a_finished_cell_without_detections_reads_n_a(sweep, tmp_path):
    write_report(sweep["gn_4img_seed0"], float("nan"), float("nan"))  # COCOeval: no detections
    runs = collect_runs(str(tmp_path))
    (entry,) = [r for r in runs if r["name"] == "gn_4img_seed0"]
    assert entry["status"] == "finished" and entry["segm_AP"] is None
    lines = format_sweep_markdown({"runs": runs, "cells": summarize_cells(runs)}).splitlines()
    mask = lines.index("| mask AP | 1 img/GPU | 4 img/GPU |")
    assert lines[mask + 3] == "| GN | — | n/a |"
    assert any(line.startswith("| gn_4img_seed0 |") and "| n/a | n/a |" in line for line in lines)


def test_plot_only_without_cells_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--plot-only: no sweep cells in"):
        sweep_main(["--output-dir", str(tmp_path), "--plot-only"])


def test_plot_only_rerenders_json_table_and_png(sweep, tmp_path):
    write_report(sweep["gn_1img_seed0"], 20.0, 18.0)
    write_report(sweep["gn_4img_seed0"], 22.0, 19.0)
    write_report(sweep["bn_4img_seed1"], 15.0, 12.0)
    assert sweep_main(["--output-dir", str(tmp_path), "--plot-only"]) == 0
    with open(tmp_path / "sweep.json") as f:
        report = json.load(f)
    assert report["format"] == "gn_det.sweep/1"
    assert sorted(r["name"] for r in report["runs"] if r["status"] == "finished") == [
        "bn_4img_seed1",
        "gn_1img_seed0",
        "gn_4img_seed0",
    ]
    assert "| GN | 18.0 | 19.0 |" in (tmp_path / "sweep.md").read_text()
    image = cv2.imread(str(tmp_path / "sweep.png"))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 400


def test_finished_cells_are_not_run_again(sweep, tmp_path, monkeypatch):
    for r in sweep.values():
        write_report(r, 1.0, 1.0)
    monkeypatch.setattr(runner, "run_cell_subprocess", lambda *a, **k: pytest.fail("a finished cell was run"))
    outcome = run_sweep(list(sweep.values()))
    assert (len(outcome["finished"]), outcome["ran"], outcome["failed"]) == (8, [], [])


def test_unfinished_cells_run_and_failures_do_not_stop_the_sweep(sweep, monkeypatch):
    runs = [sweep["gn_1img_seed0"], sweep["gn_4img_seed0"]]
    calls = []

    def fake_cell(run, num_gpus, dataset_args):
        calls.append(run.cell.name)
        if run.cell.name == "gn_4img_seed0":
            write_report(run, 5.0, 4.0)
            return 0
        return 3

    monkeypatch.setattr(runner, "run_cell_subprocess", fake_cell)
    outcome = run_sweep(runs)
    assert calls == ["gn_1img_seed0", "gn_4img_seed0"]
    assert (outcome["ran"], outcome["failed"]) == (["gn_4img_seed0"], ["gn_1img_seed0"])
    attempts = runner.load_run_state(runs[0].output_dir)["attempts"]
    assert [(a["returncode"], a["finished"]) for a in attempts] == [(3, False)]


def test_a_cell_dir_holding_another_config_is_refused(sweep, tmp_path):
    write_report(sweep["gn_1img_seed0"], 1.0, 1.0)
    changed = plan_sweep(base_cfg(max_iter=80), ["GN"], [1], [0], str(tmp_path))
    with pytest.raises(ConfigChangedError, match=r"gn_1img_seed0 already holds a run of another config"):
        run_sweep(changed)
    # A cell that never trained just takes the new config.
    fresh = plan_sweep(base_cfg(max_iter=80), ["GN"], [4], [0], str(tmp_path))
    prepare_run_dir(fresh[0])
    assert runner.load_run_state(fresh[0].output_dir)["max_iter"] == 80


def test_write_sweep_outputs_lists_only_the_named_cells(sweep, tmp_path):
    write_report(sweep["gn_1img_seed0"], 20.0, 18.0)
    paths = write_sweep_outputs(str(tmp_path), {"norms": ["GN"]}, names=["gn_1img_seed0", "gn_4img_seed0"])
    with open(paths["json"]) as f:
        report = json.load(f)
    assert [r["name"] for r in report["runs"]] == ["gn_1img_seed0", "gn_4img_seed0"]
    assert report["sweep"] == {"norms": ["GN"]}
