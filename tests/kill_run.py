"""Helpers for the kill-and-resume tests: a tiny GN Mask R-CNN config on 60 different images, a
launcher of tools/train_net.py's main that can SIGKILL its run at a given moment, and runs of it.

Not a test module; imported by tests/checkpoint/test_kill_resume.py and tests/tools/test_distributed.py.
"""
import os
import signal
import subprocess
import sys
import time

import torch

from tiny_run import REPO, make_split

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
  ROI_HEADS: {NAME: StandardROIHeads, IN_FEATURES: [p2, p3, p4, p5], BATCH_SIZE_PER_IMAGE: 32, NUM_CLASSES: 4}
  ROI_BOX_HEAD: {NAME: GNConvFCHead, NUM_CONV: 1, NUM_FC: 1, CONV_DIM: 32, FC_DIM: 64, NORM: GN, POOLER_RESOLUTION: 7}
  ROI_MASK_HEAD: {NAME: GNMaskRCNNConvUpsampleHead, NUM_CONV: 1, CONV_DIM: 32, NORM: GN, POOLER_RESOLUTION: 14}
DATASETS: {TRAIN: [many_train], TEST: []}
DATALOADER: {NUM_WORKERS: 0}
INPUT: {MIN_SIZE_TRAIN: [64], MAX_SIZE_TRAIN: 64, MASK_FORMAT: bitmask, RANDOM_FLIP: horizontal}
SOLVER: {IMS_PER_BATCH: 2, BASE_LR: 0.02, MAX_ITER: %d, STEPS: [], WARMUP_ITERS: 2, CHECKPOINT_PERIOD: 2}
TEST: {EVAL_PERIOD: 0}
SEED: 7
""" % MAX_ITER

# Runs tools/train_net.py's main (gn_det.engine.train_net.invoke_main; the script itself would
# become the __main__ of launch's spawned processes). Its top level runs in each of them too.
# $KILL_AT_ITER: rank 0 SIGKILLs its whole process group just before that iteration.
# $BLOCK_SAVE: the save of that checkpoint stops (sleeps until killed) after 1 MB of it.
# $PLAIN_STREAM: Detectron2's own training loader instead of gn_det's resumable stream.
# A run that finishes writes each rank's final weights to OUTPUT_DIR/rank<r>.pth (and what it
# ran with to rank<r>.json).
LAUNCHER = r"""
import json, os, signal, sys, time
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from gn_det.checkpoint import atomic
from gn_det.engine import train_net

class _TestHook(HookBase):
    def before_step(self):
        kill_at = os.environ.get("KILL_AT_ITER")
        if kill_at and self.trainer.iter == int(kill_at) and comm.is_main_process():
            print(f"KILLING-AT-{self.trainer.iter}", flush=True)
            os.killpg(os.getpgid(0), signal.SIGKILL)

    def after_train(self):
        if sys.exc_info()[1] is None and self.trainer.iter + 1 >= self.trainer.max_iter:
            model = getattr(self.trainer.model, "module", self.trainer.model)
            out = os.path.join(self.trainer.cfg.OUTPUT_DIR, f"rank{comm.get_rank()}")
            torch.save(model.state_dict(), out + ".pth")
            with open(out + ".json", "w") as f:
                json.dump({"world_size": comm.get_world_size(), "ddp": hasattr(self.trainer.model, "module"),
                           "ims_per_batch": self.trainer.cfg.SOLVER.IMS_PER_BATCH}, f)

_build_hooks = train_net.Trainer.build_hooks
train_net.Trainer.build_hooks = lambda self: _build_hooks(self) + [_TestHook()]
if os.environ.get("PLAIN_STREAM"):
    from detectron2.engine import DefaultTrainer
    train_net.Trainer.build_train_loader = DefaultTrainer.build_train_loader

block = os.environ.get("BLOCK_SAVE")
if block:
    write = atomic.AtomicFileWriter.write
    def blocking_write(self, data):
        if os.path.basename(self.path) == block and self.tell() + len(data) > 1_000_000:
            write(self, data[: max(0, 1_000_000 - self.tell())])
            self.flush()
            print("BLOCKED-MID-SAVE", flush=True)
            time.sleep(3600)
        return write(self, data)
    atomic.AtomicFileWriter.write = blocking_write

if __name__ == "__main__":
    train_net.invoke_main(sys.argv[1:])
"""


def make_workdir(root):
    """Config, launcher and a 60-image tiny shapes split under ``root``; returns ``root``."""
    json_file, image_dir = make_split(root, "many_train", num_images=60, seed=31)
    (root / "config.yaml").write_text(CONFIG)
    (root / "launcher.py").write_text(LAUNCHER)
    (root / "dataset").write_text(f"{json_file}\n{image_dir}\n")
    return root


def command(workdir, output_dir, *, resume=False, num_gpus=1, opts=()):
    """The launcher's command line: tools/train_net.py's arguments."""
    json_file, image_dir = (workdir / "dataset").read_text().split()
    return [
        sys.executable, str(workdir / "launcher.py"),
        "--config-file", str(workdir / "config.yaml"),
        "--dataset", "many_train", json_file, image_dir,
        "--num-gpus", str(num_gpus),
        # Detectron2's default URL is one port per user: two of these runs at once (pytest-xdist)
        # would both listen on it. "auto" makes launch pick a free port.
        "--dist-url", "auto",
        *(["--resume"] if resume else []),
        "OUTPUT_DIR", str(output_dir), *opts,
    ]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    env.update({k: v for k, v in extra.items() if v})
    return env


def train(workdir, output_dir, *, resume=False, num_gpus=1, opts=(), plain=False):
    """Run to the end; returns the log."""
    output_dir.mkdir(exist_ok=True)
    log = output_dir / ("resume.log" if resume else "train.log")
    with open(log, "w") as f:
        result = subprocess.run(
            command(workdir, output_dir, resume=resume, num_gpus=num_gpus, opts=opts),
            stdout=f, stderr=subprocess.STDOUT, timeout=900, env=_env(PLAIN_STREAM="1" if plain else ""),
        )
    text = log.read_text()
    assert result.returncode == 0, text[-4000:]
    return text


def train_until_killed(workdir, output_dir, *, kill_at_iter=None, block_save=None, num_gpus=1, opts=(), plain=False):
    """Start a run and SIGKILL its process group: the run does it itself before iteration
    ``kill_at_iter``, or the test does once the run is blocked in the save of ``block_save``."""
    output_dir.mkdir(exist_ok=True)
    log = output_dir / "killed.log"
    env = _env(
        KILL_AT_ITER=str(kill_at_iter) if kill_at_iter is not None else "",
        BLOCK_SAVE=block_save or "",
        PLAIN_STREAM="1" if plain else "",
    )
    with open(log, "w") as f:
        child = subprocess.Popen(
            command(workdir, output_dir, num_gpus=num_gpus, opts=opts),
            stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        try:
            deadline = time.time() + 900
            while child.poll() is None:
                if block_save and "BLOCKED-MID-SAVE" in log.read_text():
                    os.killpg(child.pid, signal.SIGKILL)
                    break
                assert time.time() < deadline, "timed out waiting for the kill point"
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    text = log.read_text()
    assert child.returncode == -signal.SIGKILL, text[-4000:]
    assert ("BLOCKED-MID-SAVE" if block_save else f"KILLING-AT-{kill_at_iter}") in text
    return text


def tag(output_dir):
    path = output_dir / "last_checkpoint"
    return path.read_text() if path.exists() else None


def final_weights(output_dir, rank=0):
    return torch.load(output_dir / f"rank{rank}.pth", map_location="cpu", weights_only=True)


def different_tensors(a, b):
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]
