"""Multi-process training through Detectron2's launch: 2 CPU processes over Gloo."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tiny_run import BASE_CONFIG, REPO, make_split, tiny_opts

# Runs tools/train_net.py's main under launch, then saves every rank's weights, so the test can
# compare what each process ended with (only rank 0 writes checkpoints).
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import gn_det
    from detectron2.engine import launch
    from detectron2.utils import comm
    from gn_det.engine import Trainer, argument_parser, setup

    def main(args):
        cfg = setup(args)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        torch.save(model.state_dict(), os.path.join(cfg.OUTPUT_DIR, f"rank{comm.get_rank()}.pth"))
        with open(os.path.join(cfg.OUTPUT_DIR, f"rank{comm.get_rank()}.json"), "w") as f:
            json.dump({"world_size": comm.get_world_size(), "ddp": hasattr(trainer.model, "module"),
                       "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH}, f)

    if __name__ == "__main__":
        args = argument_parser().parse_args()
        launch(main, args.num_gpus, dist_url=args.dist_url, args=(args,))
    """
)


@pytest.mark.slow
def test_two_gloo_processes_train_together_and_end_with_identical_weights(tmp_path):
    train = make_split(tmp_path, "dist_train", num_images=4, seed=21)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    opts = tiny_opts(out, train="dist_train", test=None, max_iter=3, steps=(2,)) + ["SOLVER.IMS_PER_BATCH", "4"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(script), "--num-gpus", "2", "--dist-url", "auto", "--config-file", BASE_CONFIG,
         "--dataset", "dist_train", *train, *opts],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    for rank in (0, 1):
        info = json.load(open(out / f"rank{rank}.json"))
        assert info == {"world_size": 2, "ddp": True, "ims_per_batch": 4}
    weights = [torch.load(out / f"rank{rank}.pth", map_location="cpu") for rank in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0, msg=key)
    # Rank 0 saved the final checkpoint after 3 steps, and logged the losses of every step.
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert final["iteration"] == 2
    for key in ("roi_heads.box_predictor.cls_score.weight", "backbone.bottom_up.stem.conv1.weight"):
        torch.testing.assert_close(final["model"][key], weights[0][key], rtol=0, atol=0)
    steps = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in steps if "total_loss" in m][-1] == 2
    assert "Rank of current process: 1. World size: 2" in open(out / "log.txt.rank1").read()
