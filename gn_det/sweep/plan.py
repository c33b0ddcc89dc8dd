"""Planning a sweep: the cells (norm x images/GPU x seed) and each cell's derived config.

Every cell starts from the same base config. Its norm preset sets the norm keys
(``norm_presets.apply_norm_preset``), then ``gn_det.batch_scaling.rescale_to_images_per_gpu`` sets
the batch, LR and schedule (the one implementation of the per-GPU batch rule), so all cells see the
same number of training images: MAX_ITER x IMS_PER_BATCH is the base config's. SEED is the cell's
seed and OUTPUT_DIR its own directory, ``<sweep dir>/runs/<norm>_<N>img_seed<S>``.
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from detectron2.config import CfgNode

from ..batch_scaling import rescale_to_images_per_gpu
from .norm_presets import NormPreset, apply_norm_preset, parse_norm_preset

__all__ = ["SweepCell", "SweepRun", "run_dir_name", "derive_run_config", "plan_sweep", "RUNS_DIR"]

RUNS_DIR = "runs"

# Backbone norms whose parameters come from the same kind of ImageNet weights.
_BN_FAMILY = ("BN", "SyncBN", "FrozenBN")
_GN_FAMILY = ("GN", "LN", "IN")


@dataclass(frozen=True)
class SweepCell:
    """One point of the sweep: a norm at a per-GPU batch, with one seed."""

    preset: NormPreset
    images_per_gpu: int
    seed: int

    @property
    def name(self) -> str:
        return run_dir_name(self.preset, self.images_per_gpu, self.seed)


@dataclass
class SweepRun:
    """A cell with its derived config (``cfg.OUTPUT_DIR`` is ``output_dir``)."""

    cell: SweepCell
    cfg: CfgNode
    output_dir: str

    @property
    def images_seen(self) -> int:
        """Training images over the whole schedule (MAX_ITER x IMS_PER_BATCH)."""
        return self.cfg.SOLVER.MAX_ITER * self.cfg.SOLVER.IMS_PER_BATCH


def run_dir_name(preset: NormPreset, images_per_gpu: int, seed: int) -> str:
    """``<preset slug>_<N>img_seed<S>``, e.g. ``frozenbn_2img_seed0`` for BN* at 2 images/GPU."""
    return f"{preset.slug}_{images_per_gpu}img_seed{seed}"


def _family(norm: str) -> str:
    if norm in _BN_FAMILY:
        return "BN"
    if norm in _GN_FAMILY:
        return "GN"
    return "none"


def _check_weights_fit(base: CfgNode, preset: NormPreset, weights: str, where: str) -> None:
    """Pretrained weights of a BN backbone do not hold a GN backbone's parameters, nor vice versa."""
    if not weights:
        return
    have, want = _family(base.MODEL.RESNETS.NORM), _family("FrozenBN" if preset.is_frozen_bn else preset.norm)
    if have != want:
        raise ValueError(
            f"Norm preset {preset.name!r} puts {want} layers in the backbone, but MODEL.WEIGHTS "
            f"{weights!r} of the base config{(' ' + where) if where else ''} is for its {base.MODEL.RESNETS.NORM!r} backbone: "
            f"the {want} layers would start untrained. Give this preset its own weights "
            f"(--weights {preset.name}=PATH_OR_URL, e.g. detectron2://ImageNetPretrained/MSRA/R-50.pkl "
            "for BN presets, with --preset-opts for the settings that go with them), or sweep from "
            "scratch (MODEL.WEIGHTS '')."
        )


def derive_run_config(
    base: CfgNode,
    preset,
    images_per_gpu: int,
    seed: int,
    output_dir: str,
    num_gpus: int = 1,
    preset_opts: Sequence[str] = (),
    where: str = "",
) -> CfgNode:
    """The config of one cell: ``base`` with ``preset``'s norms and then ``preset_opts`` (KEY VALUE
    pairs for this preset only, e.g. its MODEL.WEIGHTS), the per-GPU batch rule applied for
    ``images_per_gpu`` x ``num_gpus`` (all processes), ``SEED`` and ``OUTPUT_DIR`` set.
    """
    if isinstance(preset, str):
        preset = parse_norm_preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    preset_opts = list(preset_opts)
    if len(preset_opts) % 2:
        raise ValueError(f"Overrides for preset {preset.name!r} must be KEY VALUE pairs, got {preset_opts}.")
    cfg = apply_norm_preset(base, preset, num_processes=num_gpus, where=where)
    cfg.merge_from_list(preset_opts)
    if "MODEL.WEIGHTS" not in preset_opts[0::2]:
        _check_weights_fit(base, preset, cfg.MODEL.WEIGHTS, where)
    cfg = rescale_to_images_per_gpu(cfg, images_per_gpu, num_gpus)
    cfg.defrost()
    cfg.SEED = seed
    cfg.OUTPUT_DIR = output_dir
    return cfg


def plan_sweep(
    base: CfgNode,
    presets: Sequence,
    images_per_gpu: Sequence[int],
    seeds: Sequence[int],
    sweep_dir: str,
    num_gpus: int = 1,
    preset_opts: Optional[Dict[str, Sequence[str]]] = None,
    where: str = "",
) -> List[SweepRun]:
    """Every cell of ``presets`` x ``images_per_gpu`` x ``seeds``, in that order, with its config.

    Args:
        base: merged base config (with gn_det's keys); not modified.
        presets: ``NormPreset``s or names.
        images_per_gpu: per-GPU batches (each >= 1, no repeats).
        seeds: seeds per cell (no repeats).
        sweep_dir: the sweep's directory; runs go under ``<sweep_dir>/runs``.
        num_gpus: processes per run (GPUs x machines); also REFERENCE_WORLD_SIZE of each config.
        preset_opts: preset name -> KEY VALUE overrides for that preset only (its pretrained
            weights and the settings that go with them).
        where: the base config's file, for error messages.

    Raises:
        ValueError: repeated values, a preset that cannot run here, or rounding that would make
            cells see different numbers of images (names the base MAX_ITER that would avoid it).
    """
    presets = [parse_norm_preset(p) if isinstance(p, str) else p for p in presets]
    for label, values in (("images per GPU", images_per_gpu), ("seeds", seeds)):
        if not values:
            raise ValueError(f"No {label} given.")
        if len(set(values)) != len(values):
            raise ValueError(f"Repeated {label} in {list(values)}; give each once.")
    opts_by_slug = {parse_norm_preset(k).slug: list(v) for k, v in (preset_opts or {}).items()}
    unknown = set(opts_by_slug) - {p.slug for p in presets}
    if unknown:
        raise ValueError(
            f"Overrides (--weights/--preset-opts) name presets that are not swept: {sorted(unknown)}; "
            f"swept: {[p.name for p in presets]}."
        )
    runs = []
    for preset in presets:
        for n in images_per_gpu:
            for seed in seeds:
                cell = SweepCell(preset, n, seed)
                out = os.path.join(sweep_dir, RUNS_DIR, cell.name)
                opts = opts_by_slug.get(preset.slug, ())
                cfg = derive_run_config(base, preset, n, seed, out, num_gpus, opts, where)
                runs.append(SweepRun(cell, cfg, out))
    first_with = {}
    for r in runs:
        first_with.setdefault(r.images_seen, r.cell.name)
    if len(first_with) > 1:
        base_images = base.SOLVER.MAX_ITER * base.SOLVER.IMS_PER_BATCH
        totals = sorted({n * num_gpus for n in images_per_gpu})
        examples = ", ".join(f"{name}: {images}" for images, name in sorted(first_with.items()))
        raise ValueError(
            f"Cells would train on different numbers of images ({examples}); every cell must see the "
            f"same images. Either the base schedule (SOLVER.MAX_ITER {base.SOLVER.MAX_ITER} x "
            f"IMS_PER_BATCH {base.SOLVER.IMS_PER_BATCH} = {base_images} images) is not a whole number "
            f"of iterations at each batch of the sweep ({totals} images/iteration): choose "
            f"SOLVER.MAX_ITER so that it is; or a --preset-opts override changes the schedule of one "
            "preset: drop it."
        )
    return runs
