"""The per-GPU batch rule, in one place.

Detectron's recipe is 2 images/GPU x 8 GPUs = 16 images per iteration at LR 0.02. To train with
another per-GPU batch while every run sees the same images in the same order of magnitude of
updates (linear scaling, Goyal et al. 2017):

    total batch   = images/GPU x GPUs
    BASE_LR       = reference LR x total / 16          (0.02 for R-CNNs, 0.01 for RetinaNet)
    MAX_ITER, STEPS, CHECKPOINT_PERIOD, EVAL_PERIOD   scaled by 16 / total (same images seen)
    WARMUP_ITERS  scaled by 16 / total                 (warm-up kept in images: 1000 x 16)

``SOLVER.REFERENCE_WORLD_SIZE`` records the GPU count a config was written for, so that
Detectron2's ``DefaultTrainer.auto_scale_workers`` keeps images/GPU fixed on another GPU count by
applying the same rule (it scales exactly these keys). A config written here therefore always has
``IMS_PER_BATCH == images/GPU x REFERENCE_WORLD_SIZE``.

``solver_for_schedule`` gives the values for a named schedule ("1x" = 90k iterations at 16 images);
``rescale_to_images_per_gpu`` derives a config for any images/GPU from an existing one (the
sweep tool's entry point).
"""

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from detectron2.config import CfgNode

__all__ = [
    "REFERENCE_IMS_PER_BATCH",
    "REFERENCE_WORLD_SIZE",
    "REFERENCE_WARMUP_ITERS",
    "REFERENCE_CHECKPOINT_PERIOD",
    "SCHEDULES",
    "SolverValues",
    "solver_for_schedule",
    "cfg_images_per_gpu",
    "images_per_process",
    "rescale_to_images_per_gpu",
    "apply_solver_values",
]

# Detectron's reference recipe: 16 images per iteration on 8 GPUs (2 per GPU).
REFERENCE_IMS_PER_BATCH = 16
REFERENCE_WORLD_SIZE = 8
# Detectron2's defaults at the reference batch (iterations of 16 images).
REFERENCE_WARMUP_ITERS = 1000
REFERENCE_CHECKPOINT_PERIOD = 5000

# Schedule name -> (MAX_ITER, STEPS) in iterations of 16 images, as in Detectron2's model zoo.
# The LR drops by 10x twice: 2/3 and 8/9 through for 1x/2x, and 60k/20k iterations before
# the end for 3x and 9x (Detectron2's 3x and its from-scratch 9x).
SCHEDULES: Dict[str, Tuple[int, Tuple[int, ...]]] = {
    "1x": (90000, (60000, 80000)),
    "2x": (180000, (120000, 160000)),
    "3x": (270000, (210000, 250000)),
    "9x": (810000, (750000, 790000)),
}


@dataclass(frozen=True)
class SolverValues:
    """The SOLVER/TEST keys the rule sets. Iteration counts are in iterations of
    ``ims_per_batch`` images; ``base_lr`` is per iteration of that batch."""

    ims_per_batch: int
    reference_world_size: int
    base_lr: float
    max_iter: int
    steps: Tuple[int, ...]
    warmup_iters: int
    checkpoint_period: int
    eval_period: int

    @property
    def images_per_gpu(self) -> int:
        return self.ims_per_batch // self.reference_world_size


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _scale_iters(iters: int, images_before: int, images_after: int) -> int:
    # Same images seen: iterations x batch stays constant. Rounded like auto_scale_workers.
    return int(round(iters * images_before / images_after))


def solver_for_schedule(
    images_per_gpu: int,
    num_gpus: int = REFERENCE_WORLD_SIZE,
    schedule: str = "1x",
    reference_lr: float = 0.02,
    eval_period_at_reference: int = 0,
) -> SolverValues:
    """The solver values for ``schedule`` at ``images_per_gpu`` x ``num_gpus`` images per iteration.

    Args:
        images_per_gpu: images per GPU per iteration (1, 2, 4, ...).
        num_gpus: GPUs the config is written for (becomes REFERENCE_WORLD_SIZE).
        schedule: a key of ``SCHEDULES``.
        reference_lr: BASE_LR at 16 images (0.02 for Mask/Faster/Cascade R-CNN, 0.01 for RetinaNet).
        eval_period_at_reference: TEST.EVAL_PERIOD in iterations of 16 images (0: only at the end).
    """
    _check_count(images_per_gpu, "images_per_gpu")
    _check_count(num_gpus, "num_gpus")
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}.")
    max_iter, steps = SCHEDULES[schedule]
    total = images_per_gpu * num_gpus
    ref = REFERENCE_IMS_PER_BATCH
    return SolverValues(
        ims_per_batch=total,
        reference_world_size=num_gpus,
        base_lr=reference_lr * total / ref,
        max_iter=_scale_iters(max_iter, ref, total),
        steps=tuple(_scale_iters(s, ref, total) for s in steps),
        warmup_iters=_scale_iters(REFERENCE_WARMUP_ITERS, ref, total),
        checkpoint_period=_scale_iters(REFERENCE_CHECKPOINT_PERIOD, ref, total),
        eval_period=_scale_iters(eval_period_at_reference, ref, total),
    )


def images_per_process(ims_per_batch: int, reference_world_size: int, num_processes: int) -> int:
    """Images each of ``num_processes`` processes gets per iteration: the one copy of the rule.

    ``DefaultTrainer.auto_scale_workers`` first rescales ``ims_per_batch`` from
    ``reference_world_size`` GPUs (0: the batch is used as it is) to ``num_processes``, keeping
    images/GPU; the total must then split evenly. A ValueError names the key and valid values.
    """
    if ims_per_batch <= 0:
        raise ValueError(f"SOLVER.IMS_PER_BATCH must be > 0, got {ims_per_batch}.")
    batch = ims_per_batch
    if reference_world_size > 0:
        if batch % reference_world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={batch} is not a multiple of "
                f"SOLVER.REFERENCE_WORLD_SIZE={reference_world_size}; it must be images/GPU x "
                f"REFERENCE_WORLD_SIZE (a multiple of {reference_world_size})."
            )
        batch = int(round(batch * num_processes / reference_world_size))
    if batch % num_processes:
        lower = batch - batch % num_processes
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH: {batch} images per batch cannot be split evenly over "
            f"{num_processes} processes (--num-gpus x --num-machines); use a multiple of "
            f"{num_processes}, e.g. "
            + ", ".join(str(v) for v in (lower, lower + num_processes) if v > 0)
        )
    return batch // num_processes


def cfg_images_per_gpu(cfg: CfgNode) -> int:
    """Images per GPU of a config written for a GPU count: IMS_PER_BATCH / REFERENCE_WORLD_SIZE."""
    total, world = cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.REFERENCE_WORLD_SIZE
    if world <= 0:
        raise ValueError(
            f"SOLVER.REFERENCE_WORLD_SIZE is {world}: the config does not say how many GPUs "
            f"its IMS_PER_BATCH={total} is for, so it has no per-GPU batch. "
            f"Set REFERENCE_WORLD_SIZE > 0."
        )
    return images_per_process(total, world, world)


def rescale_to_images_per_gpu(
    cfg: CfgNode, images_per_gpu: int, num_gpus: Optional[int] = None
) -> CfgNode:
    """A copy of ``cfg`` that trains with ``images_per_gpu`` x ``num_gpus`` images per iteration.

    BASE_LR is scaled with the total batch; MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD and
    TEST.EVAL_PERIOD inversely, so the run sees the same images as ``cfg`` and warms up over
    the same images. REFERENCE_WORLD_SIZE becomes ``num_gpus``, so Detectron2 keeps
    ``images_per_gpu`` when the result runs on another GPU count.

    Args:
        cfg: a merged config (not modified); its current IMS_PER_BATCH and solver values are the
            starting point, whatever its per-GPU batch.
        images_per_gpu: the wanted images per GPU.
        num_gpus: GPUs the result is written for. Default: ``cfg``'s REFERENCE_WORLD_SIZE, or 1
            when that is 0 (a config not written for a GPU count).
    """
    _check_count(images_per_gpu, "images_per_gpu")
    if num_gpus is None:
        num_gpus = cfg.SOLVER.REFERENCE_WORLD_SIZE or 1
    _check_count(num_gpus, "num_gpus")
    old_total = _check_count(cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
    new_total = images_per_gpu * num_gpus
    s = cfg.SOLVER
    values = SolverValues(
        ims_per_batch=new_total,
        reference_world_size=num_gpus,
        base_lr=s.BASE_LR * new_total / old_total,
        max_iter=_scale_iters(s.MAX_ITER, old_total, new_total),
        steps=tuple(_scale_iters(step, old_total, new_total) for step in s.STEPS),
        warmup_iters=_scale_iters(s.WARMUP_ITERS, old_total, new_total),
        checkpoint_period=_scale_iters(s.CHECKPOINT_PERIOD, old_total, new_total),
        eval_period=_scale_iters(cfg.TEST.EVAL_PERIOD, old_total, new_total),
    )
    return apply_solver_values(cfg, values)


def apply_solver_values(cfg: CfgNode, values: SolverValues) -> CfgNode:
    """A copy of ``cfg`` with ``values`` written into its SOLVER and TEST keys."""
    cfg = cfg.clone()
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.SOLVER.IMS_PER_BATCH = values.ims_per_batch
    cfg.SOLVER.REFERENCE_WORLD_SIZE = values.reference_world_size
    cfg.SOLVER.BASE_LR = values.base_lr
    cfg.SOLVER.MAX_ITER = values.max_iter
    cfg.SOLVER.STEPS = values.steps
    cfg.SOLVER.WARMUP_ITERS = values.warmup_iters
    cfg.SOLVER.CHECKPOINT_PERIOD = values.checkpoint_period
    cfg.TEST.EVAL_PERIOD = values.eval_period
    if frozen:
        cfg.freeze()
    return cfg
