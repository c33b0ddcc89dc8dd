"""Non-finite losses stop training with the iteration and the loss terms named, before the
optimizer step, and the last good checkpoint stays the one last_checkpoint names."""

import logging
import os
import socket

import pytest
import torch
from detectron2.engine import SimpleTrainer, hooks
from detectron2.engine.launch import launch

from gn_det.checkpoint import SafeDetectionCheckpointer
from gn_det.engine.hooks import NonFiniteLossError, NonFiniteLossHook, NonFiniteWeightsError


class TwoLossModel(torch.nn.Module):
    """Returns {"loss_cls", "loss_box_reg"}; a batch's "box_scale" multiplies only loss_box_reg."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, batch):
        out = self.linear(batch["x"])
        return {
            "loss_cls": out[:, 0].pow(2).mean(),
            "loss_box_reg": out[:, 1].abs().mean() * batch["box_scale"],
        }


def _loader(bad_iteration, bad_value=float("nan"), rank_with_bad=None):
    generator = torch.Generator().manual_seed(0)
    iteration = 0
    while True:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        bad = iteration == bad_iteration and (rank_with_bad is None or rank == rank_with_bad)
        yield {"x": torch.randn(4, 3, generator=generator), "box_scale": bad_value if bad else 1.0}
        iteration += 1


class _RecordWeights(hooks.HookBase):
    def __init__(self):
        self.after_step_weights = {}

    def after_step(self):
        self.after_step_weights[self.trainer.iter] = (
            self.trainer.model.linear.weight.detach().clone()
        )


def _train(tmp_path, bad_iteration, bad_value=float("nan"), max_iter=10):
    torch.manual_seed(0)
    model = TwoLossModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _loader(bad_iteration, bad_value), optimizer)
    checkpointer = SafeDetectionCheckpointer(model, str(tmp_path))
    recorder = _RecordWeights()
    trainer.register_hooks(
        [
            NonFiniteLossHook(checkpointer),
            hooks.PeriodicCheckpointer(checkpointer, period=2),
            recorder,
        ]
    )
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train(0, max_iter)
    return model, info.value, recorder


def test_nan_loss_names_iteration_and_terms(tmp_path):
    _, error, _ = _train(tmp_path, bad_iteration=5)
    assert error.iteration == 5 and error.nonfinite_terms == ["loss_box_reg"]
    message = str(error)
    assert "Non-finite loss at iteration 5: loss_box_reg=nan" in message
    assert "(finite: loss_cls=" in message


def test_inf_loss_is_caught_too(tmp_path):
    _, error, _ = _train(tmp_path, bad_iteration=2, bad_value=float("inf"))
    assert error.iteration == 2 and "loss_box_reg=inf" in str(error)


def test_last_good_checkpoint_is_kept_and_named(tmp_path):
    _, error, _ = _train(tmp_path, bad_iteration=5)
    # PeriodicCheckpointer(period=2) saved after iterations 1 and 3; nothing after the NaN.
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        "model_0000001.pth",
        "model_0000003.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert error.last_checkpoint == str(tmp_path / "model_0000003.pth")
    assert f"The last good checkpoint is kept: {tmp_path / 'model_0000003.pth'}" in str(error)
    saved = torch.load(tmp_path / "model_0000003.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_optimizer_step_of_the_bad_iteration_is_not_taken(tmp_path):
    model, _, recorder = _train(tmp_path, bad_iteration=5)
    assert torch.isfinite(model.linear.weight).all()
    assert torch.equal(model.linear.weight, recorder.after_step_weights[4])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_rank_worker(out_dir):
    torch.manual_seed(0)
    model = TwoLossModel()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    trainer = SimpleTrainer(
        ddp, _loader(bad_iteration=3, rank_with_bad=1), torch.optim.SGD(model.parameters(), lr=0.1)
    )
    trainer.register_hooks([NonFiniteLossHook()])
    rank = torch.distributed.get_rank()
    try:
        trainer.train(0, 10)
        result = "finished"
    except NonFiniteLossError as e:
        result = f"stopped at {e.iteration}: {e.nonfinite_terms}: {str(e).split(' (finite')[0]}"
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write(result)


def test_all_ranks_stop_together_when_one_rank_sees_nan(tmp_path):
    # Only rank 1's loss is NaN; rank 0 must stop too instead of hanging in the next all-reduce.
    launch(_two_rank_worker, 2, dist_url=f"tcp://127.0.0.1:{_free_port()}", args=(str(tmp_path),))
    assert (tmp_path / "rank0.txt").read_text() == (
        "stopped at 3: ['loss_box_reg']: Non-finite loss at iteration 3: loss_box_reg (non-finite on another rank)"
    )
    assert (tmp_path / "rank1.txt").read_text() == (
        "stopped at 3: ['loss_box_reg']: Non-finite loss at iteration 3: loss_box_reg=nan"
    )


class _HugeStepAt(hooks.HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            for group in self.trainer.optimizer.param_groups:
                group["lr"] = float(
                    "inf"
                )  # a diverging step: finite loss, infinite weights after it


def test_nonfinite_weights_are_not_saved_over_the_last_good_checkpoint(tmp_path):
    model = TwoLossModel()
    trainer = SimpleTrainer(
        model, _loader(bad_iteration=-1), torch.optim.SGD(model.parameters(), lr=0.1)
    )
    checkpointer = SafeDetectionCheckpointer(model, str(tmp_path))
    trainer.register_hooks(
        [
            _HugeStepAt(3),
            NonFiniteLossHook(checkpointer),
            hooks.PeriodicCheckpointer(checkpointer, period=2),
        ]
    )
    with pytest.raises(NonFiniteWeightsError) as info:
        trainer.train(0, 10)
    assert info.value.iteration == 3 and "linear.weight" in info.value.tensors
    assert (
        "Non-finite weights after the optimizer step of iteration 3 (the losses were finite)"
        in str(info.value)
    )
    # The save due after iteration 3 did not happen; model_0000001 is still the last one.
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == ["model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not torch.isfinite(model.linear.weight).all()


class _DivergingModel(TwoLossModel):
    """Raises Detectron2's own divergence error from inside the forward (as its RPN does)."""

    def forward(self, batch):
        if batch["box_scale"] != 1.0:
            raise FloatingPointError(
                "Predicted boxes or scores contain Inf/NaN. Training has diverged."
            )
        return super().forward(batch)


def test_detectron2_divergence_errors_are_reported_with_the_last_good_checkpoint(tmp_path, caplog):
    model = _DivergingModel()
    trainer = SimpleTrainer(
        model, _loader(bad_iteration=5), torch.optim.SGD(model.parameters(), lr=0.1)
    )
    checkpointer = SafeDetectionCheckpointer(model, str(tmp_path))
    trainer.register_hooks(
        [NonFiniteLossHook(checkpointer), hooks.PeriodicCheckpointer(checkpointer, 2)]
    )
    # The hook logs to "gn_det.engine.hooks". An in-process run earlier in this worker may have
    # called Detectron2's setup_logger(name="gn_det"), which stops propagation to the root logger
    # that caplog listens on: listen on the hook's own logger.
    hook_logger = logging.getLogger("gn_det.engine.hooks")
    hook_logger.addHandler(caplog.handler)
    try:
        with pytest.raises(FloatingPointError, match="Training has diverged"):
            trainer.train(0, 10)
    finally:
        hook_logger.removeHandler(caplog.handler)
    assert (
        f"Training diverged at iteration 5 (Predicted boxes or scores contain Inf/NaN. Training has "
        f"diverged.). The last good checkpoint is kept: {tmp_path / 'model_0000003.pth'}"
    ) in caplog.text
