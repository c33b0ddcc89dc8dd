"""A real 2 x 2 sweep (GN, BN x 1, 2 images/GPU) on tiny shapes images, then resuming it.

Each cell trains a few iterations in its own subprocess (the default), is evaluated by gn_det's
trainer, and the sweep writes sweep.json, sweep.md and sweep.png.
"""

import json
import os

import cv2
import pytest

from gn_det.data import ShapesSpec, generate_shapes_split
from gn_det.sweep.cli import sweep_main
from gn_det.sweep.runner import load_run_state

pytestmark = pytest.mark.slow

NAMES = ["gn_1img_seed0", "gn_2img_seed0", "bn_1img_seed0", "bn_2img_seed0"]
# 64 px images with 1-3 shapes, so that a cell trains and evaluates in seconds.
TINY = dict(
    height=64, width=64, min_shapes=1, max_shapes=3, min_radius=7, max_radius=22, min_visible_pixels=20
)


def tiny_split(root, name, num_images, seed):
    directory = generate_shapes_split(str(root), name, ShapesSpec(num_images=num_images, seed=seed, **TINY))
    return [name, os.path.join(directory, "annotations.json"), os.path.join(directory, "images")]


def sweep_argv(tmp_path, norms=("GN", "BN"), images_per_gpu=("1", "2")):
    train = tiny_split(tmp_path / "data", "sweep_tiny_train", 8, 1)
    val = tiny_split(tmp_path / "data", "sweep_tiny_val", 4, 2)
    return [
        "--norms",
        *norms,
        "--images-per-gpu",
        *images_per_gpu,
        "--output-dir",
        str(tmp_path / "sweep"),
        "--dataset",
        *train,
        "--dataset",
        *val,
        "--train-dataset",
        "sweep_tiny_train",
        "--test-dataset",
        "sweep_tiny_val",
        # 8 images per cell: 8 iterations at 1 image/GPU, 4 at 2; checkpoints every 4 images.
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.STEPS",
        "(3,)",
        "SOLVER.WARMUP_ITERS",
        "1",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "INPUT.MAX_SIZE_TRAIN",
        "64",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "64",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN",
        "100",
        "MODEL.RPN.POST_NMS_TOPK_TEST",
        "50",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
        "16",
        "TEST.DETECTIONS_PER_IMAGE",
        "10",
        # After 8 images every score is low; keep the detections so that COCOeval has some.
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        "0.0",
        "DATALOADER.NUM_WORKERS",
        "0",
    ]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep2x2")
    argv = sweep_argv(tmp_path)
    assert sweep_main(argv) == 0
    return tmp_path / "sweep", argv


def test_sweep_json_has_every_run_with_ap_and_time(finished_sweep):
    sweep_dir, _ = finished_sweep
    with open(sweep_dir / "sweep.json") as f:
        report = json.load(f)
    assert report["format"] == "gn_det.sweep/1"
    assert report["sweep"]["norms"] == ["GN", "BN"] and report["sweep"]["images_per_gpu"] == [1, 2]
    runs = {r["name"]: r for r in report["runs"]}
    assert list(runs) == NAMES
    for name, r in runs.items():
        assert r["status"] == "finished", name
        assert r["dataset"] == "sweep_tiny_val"
        assert r["images_seen"] == 8 and r["ims_per_batch"] == r["images_per_gpu"]
        assert r["max_iter"] == 8 // r["images_per_gpu"]
        assert r["base_lr"] == pytest.approx(0.02 * r["images_per_gpu"] / 2)
        for key in ("bbox_AP", "segm_AP"):
            assert 0.0 <= r[key] <= 100.0, (name, key)
        assert r["train_seconds"] > 0 and r["train_seconds_complete"] is True
        assert r["wall_seconds"] >= r["train_seconds"]
    cells = {(c["norm"], c["images_per_gpu"]): c for c in report["cells"]}
    assert set(cells) == {("GN", 1), ("GN", 2), ("BN", 1), ("BN", 2)}
    assert all(c["num_seeds"] == 1 for c in cells.values())
    assert cells[("BN", 2)]["segm_AP"]["mean"] == runs["bn_2img_seed0"]["segm_AP"]
    # Each cell trained with its own norm and batch.
    with open(sweep_dir / "runs" / "bn_1img_seed0" / "sweep_config.yaml") as f:
        text = f.read()
    assert "NORM: BN" in text and "IMS_PER_BATCH: 1" in text


def test_table_and_plot(finished_sweep):
    sweep_dir, _ = finished_sweep
    table = (sweep_dir / "sweep.md").read_text()
    assert "| mask AP | 1 img/GPU | 2 img/GPU |" in table and "| box AP | 1 img/GPU | 2 img/GPU |" in table
    for name in NAMES:
        assert f"| {name} |" in table
    image = cv2.imread(str(sweep_dir / "sweep.png"))
    assert image is not None and image.ndim == 3 and image.shape[0] > 200


def test_rerun_skips_finished_cells_and_resumes_an_interrupted_one(finished_sweep):
    sweep_dir, argv = finished_sweep
    cell = sweep_dir / "runs" / "gn_1img_seed0"
    # Make it look killed after the checkpoint at iteration 3 (of 8): no final model, no report.
    for name in ("model_final.pth", "model_0000007.pth", "ap_report.json", "train_time.json"):
        (cell / name).unlink()
    (cell / "last_checkpoint").write_text("model_0000003.pth")
    mtimes = {n: os.path.getmtime(sweep_dir / "runs" / n / "ap_report.json") for n in NAMES[1:]}

    assert sweep_main(argv) == 0
    for name in NAMES[1:]:
        assert len(load_run_state(str(sweep_dir / "runs" / name))["attempts"]) == 1, name
        assert os.path.getmtime(sweep_dir / "runs" / name / "ap_report.json") == mtimes[name]
    attempts = load_run_state(str(cell))["attempts"]
    assert [a["resumed"] for a in attempts] == [False, True] and attempts[-1]["finished"]
    with open(cell / "train_time.json") as f:
        assert [(s["start_iter"], s["end_iter"]) for s in json.load(f)] == [(4, 8)]
    with open(sweep_dir / "sweep.json") as f:
        (entry,) = [r for r in json.load(f)["runs"] if r["name"] == "gn_1img_seed0"]
    assert entry["status"] == "finished" and entry["train_seconds_complete"] is False


def test_in_process_cell(tmp_path):
    """--in-process trains the cell in the sweep's own process, with the same outputs."""
    argv = sweep_argv(tmp_path, norms=["GN"], images_per_gpu=["2"])  # 4 iterations
    assert sweep_main(["--in-process"] + argv) == 0
    with open(tmp_path / "sweep" / "sweep.json") as f:
        (run,) = json.load(f)["runs"]
    assert (run["name"], run["status"], run["max_iter"]) == ("gn_2img_seed0", "finished", 4)
    assert run["segm_AP"] is not None and run["train_seconds_complete"] is True
