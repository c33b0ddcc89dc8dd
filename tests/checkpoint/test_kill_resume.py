"""Kill training with SIGKILL during and between checkpoint saves, resume with --resume: training
continues from the last complete checkpoint and ends with exactly the weights of an
uninterrupted run with the same seed (CPU, deterministic: one image, no loader workers).

Runs tools/train_net.py in subprocesses on a tiny GN Mask R-CNN (R18-FPN, 64 px, 6 iterations,
a checkpoint every 2).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_ITER = 6

CONFIG = """
MODEL:
  META_ARCHITECTURE: GeneralizedRCNN
  DEVICE: cpu
  WEIGHTS: ""
  MASK_ON: True
  BACKBONE: {NAME: build_gn_resnet_fpn_backbone, FREEZE_AT: 0}
  RESNETS: {DEPTH: 18, RES2_OUT_CHANNELS: 64, NORM: GN, STRIDE_IN_1X1: False, OUT_FEATURES: [res2, res3, res4, res5]}
  FPN: {IN_FEATURES: [res2, res3, res4, res5], OUT_CHANNELS: 32, NORM: GN}
  ANCHOR_GENERATOR: {SIZES: [[16], [32], [64], [128], [256]]}
  RPN: {IN_FEATURES: [p2, p3, p4, p5, p6], PRE_NMS_TOPK_TRAIN: 200, POST_NMS_TOPK_TRAIN: 50}
  ROI_HEADS: {NAME: StandardROIHeads, IN_FEATURES: [p2, p3, p4, p5], BATCH_SIZE_PER_IMAGE: 32}
  ROI_BOX_HEAD: {NAME: GNConvFCHead, NUM_CONV: 1, NUM_FC: 1, CONV_DIM: 32, FC_DIM: 64, NORM: GN, POOLER_RESOLUTION: 7}
  ROI_MASK_HEAD: {NAME: GNMaskRCNNConvUpsampleHead, NUM_CONV: 1, CONV_DIM: 32, NORM: GN, POOLER_RESOLUTION: 14}
DATASETS: {TRAIN: [tiny_train], TEST: []}
DATALOADER: {NUM_WORKERS: 0}
INPUT: {MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 64, MASK_FORMAT: polygon}
SOLVER: {IMS_PER_BATCH: 1, BASE_LR: 0.02, MAX_ITER: %d, STEPS: [], WARMUP_ITERS: 2, CHECKPOINT_PERIOD: 2}
TEST: {EVAL_PERIOD: 0}
SEED: 0
""" % MAX_ITER

# Runs tools/train_net.py in this process; with $BLOCK_SAVE set, the save of that checkpoint
# stops (the process sleeps until killed) after 1 MB of it has been written.
LAUNCHER = """
import os, runpy, sys, time
block = os.environ.get("BLOCK_SAVE")
if block:
    from gn_det.checkpoint import atomic
    write = atomic.AtomicFileWriter.write
    def blocking_write(self, data):
        if os.path.basename(self.path) == block and self.tell() + len(data) > 1_000_000:
            write(self, data[: max(0, 1_000_000 - self.tell())])
            self.flush()
            print("BLOCKED-MID-SAVE", flush=True)
            time.sleep(3600)
        return write(self, data)
    atomic.AtomicFileWriter.write = blocking_write
script = os.path.join(sys.argv[1], "tools", "train_net.py")
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_resume")
    (root / "images").mkdir()
    image = Image.new("RGB", (64, 64), (30, 30, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle([8, 8, 30, 28], fill=(200, 50, 50))
    draw.polygon([(40, 40), (60, 44), (48, 60)], fill=(50, 200, 50))
    image.save(root / "images" / "0.png")
    (root / "ann.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "0.png", "width": 64, "height": 64}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": [8, 8, 23, 21],
                        "area": 483.0,
                        "iscrowd": 0,
                        "segmentation": [[8, 8, 31, 8, 31, 29, 8, 29]],
                    },
                    {
                        "id": 2,
                        "image_id": 1,
                        "category_id": 2,
                        "bbox": [40, 40, 20, 20],
                        "area": 200.0,
                        "iscrowd": 0,
                        "segmentation": [[40, 40, 60, 44, 48, 60]],
                    },
                ],
                "categories": [{"id": 1, "name": "rect"}, {"id": 2, "name": "tri"}],
            }
        )
    )
    (root / "config.yaml").write_text(CONFIG)
    (root / "launcher.py").write_text(LAUNCHER)
    return root


def _command(workdir, output_dir, resume=False):
    return [
        sys.executable,
        str(workdir / "launcher.py"),
        ROOT,
        "--config-file",
        str(workdir / "config.yaml"),
        "--dataset",
        "tiny_train",
        str(workdir / "ann.json"),
        str(workdir / "images"),
        *(["--resume"] if resume else []),
        "OUTPUT_DIR",
        str(output_dir),
    ]


def _train(workdir, output_dir, resume=False):
    log = output_dir.parent / f"{output_dir.name}{'_resume' if resume else ''}.log"
    with open(log, "w") as f:
        result = subprocess.run(
            _command(workdir, output_dir, resume), stdout=f, stderr=subprocess.STDOUT, timeout=900
        )
    text = log.read_text()
    assert result.returncode == 0, text[-3000:]
    return text


def _train_until(workdir, output_dir, condition, block_save=None):
    """Start training, SIGKILL it as soon as ``condition(output_dir, log_text)`` holds."""
    log = output_dir.parent / f"{output_dir.name}.log"
    env = dict(os.environ, **({"BLOCK_SAVE": block_save} if block_save else {}))
    with open(log, "w") as f:
        child = subprocess.Popen(
            _command(workdir, output_dir), stdout=f, stderr=subprocess.STDOUT, env=env
        )
        try:
            deadline = time.time() + 900
            while not condition(output_dir, log.read_text()):
                assert (
                    child.poll() is None
                ), f"training ended before the kill:\n{log.read_text()[-3000:]}"
                assert time.time() < deadline, "timed out waiting for the kill point"
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL


def _tag(output_dir):
    path = output_dir / "last_checkpoint"
    return path.read_text() if path.exists() else None


def _final_weights(output_dir):
    return torch.load(output_dir / "model_final.pth", map_location="cpu", weights_only=True)[
        "model"
    ]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    output_dir = workdir / "uninterrupted"
    _train(workdir, output_dir)
    return _final_weights(output_dir)


@pytest.mark.slow
def test_kill_during_a_save_then_resume(workdir, uninterrupted):
    output_dir = workdir / "killed_mid_save"
    _train_until(
        workdir,
        output_dir,
        lambda out, log: "BLOCKED-MID-SAVE" in log,
        block_save="model_0000003.pth",
    )
    files = os.listdir(output_dir)
    assert "model_0000003.pth" not in files and any(
        f.startswith(".model_0000003.pth.") for f in files
    )
    assert _tag(output_dir) == "model_0000001.pth"  # the last complete checkpoint
    log = _train(workdir, output_dir, resume=True)
    assert "Starting training from iteration 2" in log
    assert (
        "interrupted save of model_0000003.pth" in log
    )  # the partial file was found, removed and logged
    _assert_same_weights(_final_weights(output_dir), uninterrupted)


@pytest.mark.slow
def test_kill_between_saves_then_resume(workdir, uninterrupted):
    output_dir = workdir / "killed_between_saves"
    _train_until(workdir, output_dir, lambda out, log: _tag(out) == "model_0000003.pth")
    assert "model_final.pth" not in os.listdir(output_dir)
    log = _train(workdir, output_dir, resume=True)
    assert "Starting training from iteration 4" in log
    _assert_same_weights(_final_weights(output_dir), uninterrupted)
