"""gn_det.batch_scaling: the per-GPU batch rule (LR with the total batch, iterations and warm-up
inversely) and its agreement with Detectron2's DefaultTrainer.auto_scale_workers."""

import pytest
from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer

from gn_det import add_gn_config
from gn_det.batch_scaling import (
    SCHEDULES,
    cfg_images_per_gpu,
    rescale_to_images_per_gpu,
    solver_for_schedule,
)

SOLVER_KEYS = (
    "IMS_PER_BATCH",
    "REFERENCE_WORLD_SIZE",
    "BASE_LR",
    "MAX_ITER",
    "STEPS",
    "WARMUP_ITERS",
    "CHECKPOINT_PERIOD",
)


def _solver(cfg):
    values = {k: cfg.SOLVER[k] for k in SOLVER_KEYS}
    values["STEPS"] = tuple(values["STEPS"])
    values["EVAL_PERIOD"] = cfg.TEST.EVAL_PERIOD
    return values


def _reference_cfg():
    """Detectron's recipe: 16 images on 8 GPUs, LR 0.02, 1x, evaluation every 10k iterations."""
    cfg = add_gn_config(get_cfg())
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.MAX_ITER = 90000
    cfg.SOLVER.STEPS = (60000, 80000)
    cfg.SOLVER.WARMUP_ITERS = 1000
    cfg.SOLVER.CHECKPOINT_PERIOD = 5000
    cfg.TEST.EVAL_PERIOD = 10000
    return cfg


def test_reference_point_is_detectrons_recipe():
    v = solver_for_schedule(images_per_gpu=2, num_gpus=8, schedule="1x")
    assert (v.ims_per_batch, v.reference_world_size, v.images_per_gpu) == (16, 8, 2)
    assert v.base_lr == pytest.approx(0.02)
    assert (v.max_iter, v.steps) == (90000, (60000, 80000))
    assert (v.warmup_iters, v.checkpoint_period, v.eval_period) == (1000, 5000, 0)


@pytest.mark.parametrize(
    "images_per_gpu,num_gpus", [(1, 8), (4, 8), (1, 1), (2, 4), (8, 2), (1, 16)]
)
def test_lr_is_linear_in_total_batch_and_images_seen_are_constant(images_per_gpu, num_gpus):
    total = images_per_gpu * num_gpus
    v = solver_for_schedule(images_per_gpu, num_gpus, "3x")
    assert v.ims_per_batch == total
    assert v.base_lr == pytest.approx(0.02 * total / 16)
    # Every count is in images: iterations x batch is the 16-image schedule's.
    assert v.max_iter * total == 270000 * 16
    assert tuple(s * total for s in v.steps) == (210000 * 16, 250000 * 16)
    assert v.warmup_iters * total == 1000 * 16
    assert v.checkpoint_period * total == 5000 * 16


def test_reference_lr_is_a_parameter_for_retinanet():
    assert solver_for_schedule(1, 8, "1x", reference_lr=0.01).base_lr == pytest.approx(0.005)


def test_schedules_decay_before_the_end():
    for name, (max_iter, steps) in SCHEDULES.items():
        assert list(steps) == sorted(steps) and steps[-1] < max_iter, name


def test_rescale_matches_the_schedule_values():
    cfg = _reference_cfg()
    out = rescale_to_images_per_gpu(cfg, images_per_gpu=1)
    v = solver_for_schedule(1, 8, "1x", eval_period_at_reference=10000)
    assert _solver(out) == {
        "IMS_PER_BATCH": v.ims_per_batch,
        "REFERENCE_WORLD_SIZE": v.reference_world_size,
        "BASE_LR": pytest.approx(v.base_lr),
        "MAX_ITER": v.max_iter,
        "STEPS": v.steps,
        "WARMUP_ITERS": v.warmup_iters,
        "CHECKPOINT_PERIOD": v.checkpoint_period,
        "EVAL_PERIOD": 20000,
    }


def test_rescale_leaves_its_input_unchanged_and_frozen():
    cfg = _reference_cfg()
    cfg.freeze()
    before = _solver(cfg)
    out = rescale_to_images_per_gpu(cfg, images_per_gpu=4)
    assert _solver(cfg) == before and cfg.is_frozen()
    assert out.is_frozen() and out.SOLVER.IMS_PER_BATCH == 32


def test_rescale_round_trip_restores_the_config():
    cfg = _reference_cfg()
    there = rescale_to_images_per_gpu(cfg, images_per_gpu=1, num_gpus=4)
    back = rescale_to_images_per_gpu(there, images_per_gpu=2, num_gpus=8)
    assert _solver(back) == {**_solver(cfg), "BASE_LR": pytest.approx(0.02)}


@pytest.mark.parametrize("images_per_gpu", [1, 2, 4])
@pytest.mark.parametrize("num_workers", [1, 4, 16])
def test_detectron2_auto_scale_keeps_images_per_gpu_and_agrees_with_the_rule(
    images_per_gpu, num_workers
):
    # A config written for 8 GPUs, run on num_workers GPUs: Detectron2 rescales it; the result
    # must be what the rule gives for num_workers GPUs directly.
    cfg = rescale_to_images_per_gpu(_reference_cfg(), images_per_gpu, num_gpus=8)
    scaled = DefaultTrainer.auto_scale_workers(cfg, num_workers)
    assert scaled.SOLVER.IMS_PER_BATCH == images_per_gpu * num_workers
    assert cfg_images_per_gpu(scaled) == images_per_gpu
    direct = rescale_to_images_per_gpu(_reference_cfg(), images_per_gpu, num_gpus=num_workers)
    expected = _solver(direct)
    expected["BASE_LR"] = pytest.approx(expected["BASE_LR"])
    assert _solver(scaled) == expected


def test_default_gpu_count_is_the_configs_reference_world_size():
    cfg = _reference_cfg()
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 4
    assert rescale_to_images_per_gpu(cfg, 2).SOLVER.REFERENCE_WORLD_SIZE == 4
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 0  # not written for a GPU count: one GPU
    out = rescale_to_images_per_gpu(cfg, 2)
    assert (out.SOLVER.REFERENCE_WORLD_SIZE, out.SOLVER.IMS_PER_BATCH) == (1, 2)
    assert out.SOLVER.MAX_ITER == 90000 * 8


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_images_per_gpu_is_named(bad):
    with pytest.raises(ValueError, match=r"images_per_gpu must be a positive integer, got"):
        rescale_to_images_per_gpu(_reference_cfg(), bad)
    with pytest.raises(ValueError, match=r"images_per_gpu must be a positive integer"):
        solver_for_schedule(bad)


def test_bad_num_gpus_and_schedule_are_named():
    with pytest.raises(ValueError, match=r"num_gpus must be a positive integer, got 0"):
        rescale_to_images_per_gpu(_reference_cfg(), 2, num_gpus=0)
    with pytest.raises(ValueError, match=r"Unknown schedule '4x'; valid: 1x, 2x, 3x, 9x"):
        solver_for_schedule(2, 8, "4x")


def test_images_per_gpu_needs_a_reference_world_size():
    cfg = _reference_cfg()
    assert cfg_images_per_gpu(cfg) == 2
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 0
    with pytest.raises(ValueError, match=r"REFERENCE_WORLD_SIZE is 0.*IMS_PER_BATCH=16"):
        cfg_images_per_gpu(cfg)
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 3
    with pytest.raises(ValueError, match=r"IMS_PER_BATCH=16 is not a multiple of .*=3"):
        cfg_images_per_gpu(cfg)


def test_images_per_process_follows_auto_scale_workers():
    from gn_det.batch_scaling import images_per_process

    assert images_per_process(6, 0, 3) == 2  # no reference: split as it is
    assert images_per_process(16, 8, 4) == 2  # 2 images/GPU kept on 4 processes
    with pytest.raises(ValueError, match=r"6 images per batch .* over 4 processes.*e\.g\. 4, 8"):
        images_per_process(6, 0, 4)
    with pytest.raises(ValueError, match=r"must be > 0, got 0"):
        images_per_process(0, 0, 1)
