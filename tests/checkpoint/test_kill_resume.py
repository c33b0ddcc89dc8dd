"""SIGKILL tools/train_net.py between two checkpoints or during a save, resume with --resume: the
run ends with exactly (torch.equal) the weights of an uninterrupted run, on a dataset of 60
different images, with DATALOADER.NUM_WORKERS 0 and 2. Against Detectron2's plain loader the
same test ends with other weights, which shows what it tests. (Two processes over Gloo:
tests/tools/test_distributed.py.)

Every run trains a tiny GN Mask R-CNN (R18-FPN, 64 px, 6 iterations of 2 images, a checkpoint
every 2) in a subprocess of its own process group, which the test or the run itself kills with
SIGKILL (loader workers included); see tests/kill_run.py. The uninterrupted reference has no
loader workers, so the tests with 2 workers also show that the result does not depend on
NUM_WORKERS.
"""

import os

import pytest

from kill_run import different_tensors, final_weights, make_workdir, tag, train, train_until_killed


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("kill_resume"))


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    output_dir = workdir / "uninterrupted"
    train(workdir, output_dir)
    return final_weights(output_dir)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_kill_between_saves_then_resume(workdir, uninterrupted, workers):
    output_dir = workdir / f"killed_between_saves_w{workers}"
    opts = ("DATALOADER.NUM_WORKERS", str(workers))
    train_until_killed(workdir, output_dir, kill_at_iter=4, opts=opts)
    assert tag(output_dir) == "model_0000003.pth" and not (output_dir / "model_final.pth").exists()
    log = train(workdir, output_dir, resume=True, opts=opts)
    assert "Starting training from iteration 4" in log
    assert "Data stream: continues exactly where the checkpoint was taken (batch 4" in log
    different = different_tensors(final_weights(output_dir), uninterrupted)
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_kill_during_a_save_then_resume(workdir, uninterrupted, workers):
    output_dir = workdir / f"killed_mid_save_w{workers}"
    opts = ("DATALOADER.NUM_WORKERS", str(workers))
    train_until_killed(workdir, output_dir, block_save="model_0000003.pth", opts=opts)
    files = os.listdir(output_dir)
    assert "model_0000003.pth" not in files and any(f.startswith(".model_0000003.pth.") for f in files)
    assert tag(output_dir) == "model_0000001.pth"  # the last complete checkpoint
    log = train(workdir, output_dir, resume=True, opts=opts)
    assert "Starting training from iteration 2" in log
    assert "interrupted save of model_0000003.pth" in log  # the partial file was found, removed, logged
    different = different_tensors(final_weights(output_dir), uninterrupted)
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.slow
def test_the_same_kill_and_resume_with_detectron2s_plain_loader_ends_elsewhere(workdir):
    # Detectron2's TrainingSampler starts its shuffled stream over on resume: iterations 4 and 5
    # train on the first images of the stream again instead of the 9th to 12th.
    reference, output_dir = workdir / "plain_uninterrupted", workdir / "plain_killed"
    train(workdir, reference, plain=True)
    train_until_killed(workdir, output_dir, kill_at_iter=4, plain=True)
    log = train(workdir, output_dir, resume=True, plain=True)
    assert "Starting training from iteration 4" in log and "starts its shuffled stream over" in log
    different = different_tensors(final_weights(output_dir), final_weights(reference))
    assert len(different) > 100, different
