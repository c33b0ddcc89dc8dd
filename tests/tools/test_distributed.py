"""Multi-process training through Detectron2's launch: 2 CPU processes over Gloo train together,
end with identical weights, and when both are killed with SIGKILL and resumed with --resume they
end exactly (torch.equal) as the uninterrupted run on both ranks. Runs tools/train_net.py's main
on 60 different images (tests/kill_run.py), 2 images per process."""
import json
import shutil

import pytest
import torch

from kill_run import different_tensors, final_weights, make_workdir, train, train_until_killed

GLOO = ("SOLVER.IMS_PER_BATCH", "4")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("gloo"))


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    output_dir = workdir / "uninterrupted"
    train(workdir, output_dir, num_gpus=2, opts=GLOO)
    return output_dir


@pytest.fixture(scope="module")
def killed_and_resumed(workdir):
    output_dir = workdir / "killed"
    train_until_killed(workdir, output_dir, kill_at_iter=4, num_gpus=2, opts=GLOO)  # both processes
    train(workdir, output_dir, resume=True, num_gpus=2, opts=GLOO)
    return output_dir


@pytest.mark.slow
def test_two_gloo_processes_train_together_and_end_with_identical_weights(uninterrupted):
    for rank in (0, 1):
        info = json.loads((uninterrupted / f"rank{rank}.json").read_text())
        assert info == {"world_size": 2, "ddp": True, "ims_per_batch": 4}
    assert not different_tensors(final_weights(uninterrupted, 0), final_weights(uninterrupted, 1))
    # Rank 0 saved the final checkpoint after 6 steps, and logged the losses of every step.
    final = torch.load(uninterrupted / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 5
    assert not different_tensors(final["model"], final_weights(uninterrupted, 0))
    steps = [json.loads(line) for line in open(uninterrupted / "metrics.json")]
    assert [m["iteration"] for m in steps if "total_loss" in m][-1] == 5
    assert "Rank of current process: 1. World size: 2" in (uninterrupted / "log.txt.rank1").read_text()
    # Both loaded the json as the launcher validated it (gn_det.data.handoff), and the file is gone.
    for log in ("log.txt", "log.txt.rank1"):
        assert "loaded as the launching process validated it" in (uninterrupted / log).read_text()
    assert not list((uninterrupted / "validated_datasets").glob("handoff-*"))


@pytest.mark.slow
def test_killed_and_resumed_they_end_as_the_uninterrupted_run_on_both_ranks(uninterrupted, killed_and_resumed):
    for rank in (0, 1):
        different = different_tensors(final_weights(killed_and_resumed, rank), final_weights(uninterrupted, rank))
        assert not different, f"rank {rank}: {len(different)} tensors differ, e.g. {different[:3]}"
        log = (killed_and_resumed / ("log.txt" if rank == 0 else f"log.txt.rank{rank}")).read_text()
        assert "Starting training from iteration 4" in log
        assert "Restored the RNG states saved with the checkpoint" in log
        assert "Data stream: continues exactly where the checkpoint was taken (batch 4, seed 7, 2 x 2" in log


@pytest.mark.slow
def test_resuming_with_another_world_size_says_what_it_does_instead(workdir, killed_and_resumed):
    output_dir = workdir / "to_one_process"
    output_dir.mkdir()
    shutil.copy(killed_and_resumed / "model_0000003.pth", output_dir)
    (output_dir / "last_checkpoint").write_text("model_0000003.pth")
    log = train(workdir, output_dir, resume=True, num_gpus=1, opts=GLOO)
    assert "Data stream: exact continuation is not possible (world_size 2 -> 1, batch_size 2 -> 4)" in log
    assert "continues the same shuffled index stream after the 16 images the checkpointed run drew" in log
    assert "RNG states not restored: the checkpoint holds 2 of 2 process(es)' states, this run has 1" in log
    assert (output_dir / "rank0.pth").is_file()
