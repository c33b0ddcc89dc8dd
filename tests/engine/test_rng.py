"""RNG state in checkpoints: a resumed run draws the same random numbers as an uninterrupted one."""

import random

import numpy as np
import pytest
import torch
from detectron2.engine import SimpleTrainer, TrainerBase, hooks

from gn_det.checkpoint import SafeDetectionCheckpointer
from gn_det.engine.hooks import RNGStateHook


class NoisyModel(torch.nn.Module):
    """A loss that depends on torch, numpy and Python random draws (like augmentation and sampling)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, batch):
        noise = torch.rand(4, 3) + float(np.random.uniform()) + random.random()
        return {"loss": (self.linear(batch + noise) ** 2).mean()}


class _Trainer(SimpleTrainer):
    """SimpleTrainer whose checkpoint includes the trainer state, as DefaultTrainer's does."""

    def __init__(self, out_dir, with_rng_hook):
        model = NoisyModel()
        super().__init__(
            model,
            iter(lambda: torch.ones(4, 3), None),
            torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        )
        self.checkpointer = SafeDetectionCheckpointer(
            model, out_dir, trainer=self, optimizer=self.optimizer
        )
        self.register_hooks(
            ([RNGStateHook()] if with_rng_hook else [])
            + [hooks.PeriodicCheckpointer(self.checkpointer, 3)]
        )

    def state_dict(self):
        return TrainerBase.state_dict(self)  # the optimizer is its own checkpointable here

    def load_state_dict(self, state):
        TrainerBase.load_state_dict(self, state)


class _Killed(Exception):
    pass


class _DieAt(hooks.HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise _Killed()


def _final_weights(tmp_path, with_rng_hook, interrupt_after=None, max_iter=9):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    out = tmp_path / f"{with_rng_hook}_{interrupt_after}"
    out.mkdir()
    out = str(out)
    trainer = _Trainer(out, with_rng_hook)
    if interrupt_after is None:
        trainer.train(0, max_iter)
        return trainer.model.linear.weight.detach().clone()
    trainer.register_hooks([_DieAt(interrupt_after)])
    with pytest.raises(_Killed):  # saved after iteration 2, dies before iteration interrupt_after
        trainer.train(0, max_iter)
    torch.manual_seed(123)  # a new process: other RNG states, other initial weights
    np.random.seed(123)
    random.seed(123)
    resumed = _Trainer(out, with_rng_hook)
    extra = resumed.checkpointer.resume_or_load("", resume=True)
    start = resumed.iter + 1
    assert start == 3 and "trainer" not in extra
    resumed.train(start, max_iter)
    return resumed.model.linear.weight.detach().clone()


def test_resume_with_rng_state_matches_the_uninterrupted_run(tmp_path):
    assert torch.equal(
        _final_weights(tmp_path, True), _final_weights(tmp_path, True, interrupt_after=5)
    )


def test_without_rng_state_the_resumed_run_drifts(tmp_path):
    # The same scenario without the hook: this is what the test above guards against.
    assert not torch.allclose(
        _final_weights(tmp_path, False),
        _final_weights(tmp_path, False, interrupt_after=5),
        atol=1e-4,
    )


def test_rng_state_checkpoint_loads_with_weights_only(tmp_path):
    trainer = _Trainer(str(tmp_path), True)
    trainer.train(0, 3)
    saved = torch.load(tmp_path / "model_0000002.pth", weights_only=True)
    state = saved["trainer"]["hooks"]["RNGStateHook"]
    assert state["world_size"] == 1 and set(state["ranks"][0]) >= {"torch", "numpy", "python"}
