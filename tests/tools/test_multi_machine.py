"""Two "machines" on this host: the README's train command, tools/train_net.py, started twice with
Detectron2's multi-machine flags (--num-machines 2 --machine-rank 0/1 --dist-url
tcp://127.0.0.1:PORT), one CPU process each (Gloo), each with its own output directory as two
machines would have. Both finish, and their weights are identical at the end: both log the same
SHA-256 of their state_dict (gn_det's ReplicaCheckHook) and it is the SHA-256 of the model that
machine 0 saved. A tiny GN Mask R-CNN (tests/kill_run.py) for 2 iterations; four Python processes start (two
launchers, two workers): ~35 s of CPU, 40-90 s wall on the shared 2-core machine."""
import os
import re
import socket
import subprocess
import sys

import pytest
import torch

from gn_det.engine.replica_check import state_dict_digest
from kill_run import CONFIG
from tiny_run import REPO, make_split

DIGEST = re.compile(r"Replica check: the weights are identical on all 2 processes \(sha256 of the state_dict ([0-9a-f]{64})\)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    root = tmp_path_factory.mktemp("machines")
    json_file, image_dir = make_split(root, "many_train", num_images=60, seed=31)
    (root / "config.yaml").write_text(CONFIG)
    url = f"tcp://127.0.0.1:{_free_port()}"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    runs = []
    for rank in (0, 1):
        output_dir = root / f"machine{rank}"
        command = [
            sys.executable, os.path.join(REPO, "tools", "train_net.py"),
            "--config-file", str(root / "config.yaml"), "--dataset", "many_train", json_file, image_dir,
            "--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank), "--dist-url", url,
            "OUTPUT_DIR", str(output_dir), "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
            "SOLVER.CHECKPOINT_PERIOD", "100",
        ]
        log = open(root / f"machine{rank}.out", "w")
        runs.append((output_dir, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)))
    for output_dir, log, process in runs:
        try:
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    return root, [(output_dir, process.returncode) for output_dir, _, process in runs]


@pytest.mark.slow
def test_two_machines_train_together_and_end_with_identical_weights(machines):
    root, runs = machines
    for rank, (output_dir, code) in enumerate(runs):
        assert code == 0, (root / f"machine{rank}.out").read_text()[-4000:]
    machine0, machine1 = runs[0][0], runs[1][0]
    log0, log1 = (machine0 / "log.txt").read_text(), (machine1 / "log.txt.rank1").read_text()
    assert "Rank of current process: 0. World size: 2" in log0
    assert "Rank of current process: 1. World size: 2" in log1
    digests = [DIGEST.findall(log) for log in (log0, log1)]
    assert len(digests[0]) == len(digests[1]) == 1, digests
    assert digests[0] == digests[1]
    saved = torch.load(machine0 / "model_final.pth", map_location="cpu", weights_only=True)
    assert saved["iteration"] == 1
    assert state_dict_digest(saved["model"]) == digests[0][0]
    assert not (machine1 / "model_final.pth").exists()  # only the main process saves
