"""tools/train_net.py validates its inputs before anything is built: every problem in one report,
exit status 1, no model, no worker process; --skip-invalid trains on the good records."""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """
MODEL:
  DEVICE: cpu
  WEIGHTS: ""
  MASK_ON: True
  BACKBONE: {NAME: build_gn_resnet_fpn_backbone, FREEZE_AT: 0}
  RESNETS: {DEPTH: 18, RES2_OUT_CHANNELS: 64, NORM: GN, OUT_FEATURES: [res2, res3, res4, res5]}
  FPN: {IN_FEATURES: [res2, res3, res4, res5], OUT_CHANNELS: 32, NORM: GN}
  ANCHOR_GENERATOR: {SIZES: [[16], [32], [64], [128], [256]]}
  RPN: {IN_FEATURES: [p2, p3, p4, p5, p6], PRE_NMS_TOPK_TRAIN: 200, POST_NMS_TOPK_TRAIN: 50}
  ROI_HEADS: {NAME: StandardROIHeads, IN_FEATURES: [p2, p3, p4, p5], BATCH_SIZE_PER_IMAGE: 32}
  ROI_BOX_HEAD: {NAME: GNConvFCHead, NUM_CONV: 1, NUM_FC: 1, CONV_DIM: 32, FC_DIM: 64, NORM: GN}
  ROI_MASK_HEAD: {NAME: GNMaskRCNNConvUpsampleHead, NUM_CONV: 1, CONV_DIM: 32, NORM: GN}
DATASETS: {TRAIN: [mixed_train], TEST: []}
DATALOADER: {NUM_WORKERS: 0}
INPUT: {MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 64, MASK_FORMAT: polygon}
SOLVER: {IMS_PER_BATCH: 2, BASE_LR: 0.01, MAX_ITER: 2, STEPS: [], WARMUP_ITERS: 0, CHECKPOINT_PERIOD: 100}
TEST: {EVAL_PERIOD: 0}
"""


def _square(x, y, s):
    return [x, y, x + s, y, x + s, y + s, x, y + s]


@pytest.fixture
def workdir(tmp_path):
    """3 images; annotation 21 has a zero-width box (recomputed from its polygon), annotation 31
    an unknown category (refused)."""
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for i in (1, 2, 3):
        Image.new("RGB", (64, 64), (40 * i, 90, 30)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 64})
        annotations.append(
            {
                "id": 10 * i + 1,
                "image_id": i,
                "category_id": 1,
                "iscrowd": 0,
                "area": 400.0,
                "bbox": [10, 10, 20, 20],
                "segmentation": [_square(10, 10, 20)],
            }
        )
        annotations.append(
            {
                "id": 10 * i + 2,
                "image_id": i,
                "category_id": 2,
                "iscrowd": 0,
                "area": 100.0,
                "bbox": [40, 40, 10, 10],
                "segmentation": [_square(40, 40, 10)],
            }
        )
    annotations[2]["bbox"][2] = 0
    annotations[4]["category_id"] = 9
    (tmp_path / "ann.json").write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 1, "name": "big"}, {"id": 2, "name": "small"}],
            }
        )
    )
    (tmp_path / "config.yaml").write_text(CONFIG)
    return tmp_path


def _train_net(workdir, *args):
    return subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "train_net.py"),
            "--config-file",
            str(workdir / "config.yaml"),
            "--dataset",
            "mixed_train",
            str(workdir / "ann.json"),
            str(workdir / "images"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_bad_inputs_stop_train_net_before_anything_is_built(workdir):
    checkpoint = workdir / "model_final.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:-500])  # truncated
    result = _train_net(
        workdir,
        "--num-gpus",
        "2",
        "MODEL.WEIGHTS",
        str(checkpoint),
        "SOLVER.IMS_PER_BATCH",
        "3",
        "MODEL.FPN.NROM",
        "GN",
        "OUTPUT_DIR",
        str(workdir / "out"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Input validation failed; nothing was built or trained." in output
    assert "command-line override MODEL.FPN.NROM: MODEL.FPN.NROM is not a config key" in output
    assert "3 images per batch cannot be split evenly over 2 processes" in output
    assert "image id 2 annotation id 21" in output and "image id 3 annotation id 31" in output
    assert f"MODEL.WEIGHTS = {checkpoint}" in output and "truncated" in output
    assert "Model:" not in output and "Starting training" not in output  # no model, no training
    assert not (workdir / "out" / "log.txt").exists()  # no worker process ran setup


def test_skip_invalid_trains_on_the_good_records_and_reports_the_dropped_ones(workdir):
    out = workdir / "out"
    result = _train_net(workdir, "--skip-invalid", "OUTPUT_DIR", str(out))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert ("mixed_train: 6 annotations = 4 as they are + 1 repaired + 1 dropped (1 unknown-category); "
            "3 images = 3 as they are + 0 repaired + 0 dropped") in output
    report = json.loads((out / "validation_report.json").read_text())
    ended = sorted((p["where"].split(" (annotations")[0].rsplit(" ", 1)[-1], p["kind"], p["outcome"], p["dropped"])
                   for p in report["problems"])
    assert ended == [("21", "box-from-mask", "repair", False), ("31", "unknown-category", "error", True)]
    cleaned = json.loads((out / "validated_datasets" / "mixed_train.json").read_text())
    assert sorted(a["id"] for a in cleaned["annotations"]) == [11, 12, 21, 22, 32]
    assert (out / "model_final.pth").exists()


def test_diverging_training_stops_naming_the_iteration_and_the_last_good_checkpoint(workdir):
    # A learning rate that makes training diverge within a few iterations.
    data = json.loads((workdir / "ann.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] not in (21, 31)]
    (workdir / "ann.json").write_text(json.dumps(data))
    out = workdir / "out"
    result = _train_net(
        workdir,
        "SOLVER.BASE_LR",
        "1e5",
        "SOLVER.MAX_ITER",
        "20",
        "SOLVER.CHECKPOINT_PERIOD",
        "1",
        "OUTPUT_DIR",
        str(out),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    tag = (out / "last_checkpoint").read_text()
    iteration = int(tag[len("model_") : -len(".pth")])
    assert f"at iteration {iteration + 1}" in output  # stopped right after the last save
    assert f"The last good checkpoint is kept: {out / tag}" in output
    saved = torch.load(out / tag, weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())


def test_evaluate_validates_the_checkpoint_before_building_the_model(workdir):
    weights = workdir / "model_final.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, weights)
    weights.write_bytes(weights.read_bytes()[:-500])
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "tools", "evaluate.py"),
            "--weights",
            str(weights),
            "--config-file",
            str(workdir / "config.yaml"),
            "--coco-json",
            str(workdir / "ann.json"),
            "--image-root",
            str(workdir / "images"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"MODEL.WEIGHTS = {weights}" in output and "truncated" in output
    assert "image id 2 annotation id 21" in output  # the dataset is checked in the same run
    assert "Model:" not in output
