"""Sweep planning: the cells, and each cell's config under the per-GPU batch rule."""

import os

import pytest
from detectron2.config import get_cfg

from gn_det import add_gn_config
from gn_det.sweep.plan import derive_run_config, plan_sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GN_1X = os.path.join(REPO, "configs", "COCO-InstanceSegmentation", "mask_rcnn_R_50_FPN_1x_gn.yaml")


def base_cfg(weights=""):
    """The COCO GN 1x config (16 images x 90k iterations, LR 0.02), from scratch unless ``weights``."""
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(GN_1X)
    cfg.MODEL.WEIGHTS = weights
    return cfg


def test_cells_are_norm_by_images_by_seed_each_in_its_own_dir(tmp_path):
    runs = plan_sweep(base_cfg(), ["BN*", "GN"], [1, 4], [0, 7], str(tmp_path))
    names = [r.cell.name for r in runs]
    assert names == [
        "frozenbn_1img_seed0",
        "frozenbn_1img_seed7",
        "frozenbn_4img_seed0",
        "frozenbn_4img_seed7",
        "gn_1img_seed0",
        "gn_1img_seed7",
        "gn_4img_seed0",
        "gn_4img_seed7",
    ]
    assert [r.cfg.OUTPUT_DIR for r in runs] == [str(tmp_path / "runs" / n) for n in names]
    assert [r.cfg.SEED for r in runs] == [0, 7] * 4


@pytest.mark.parametrize("num_gpus", [1, 8])
def test_every_cell_sees_the_same_images_and_lr_follows_the_rule(tmp_path, num_gpus):
    base = base_cfg()
    runs = plan_sweep(base, ["BN", "GN"], [1, 2, 4, 8], [0], str(tmp_path), num_gpus=num_gpus)
    base_images = 90000 * 16
    for r in runs:
        s = r.cfg.SOLVER
        total = r.cell.images_per_gpu * num_gpus
        assert (s.IMS_PER_BATCH, s.REFERENCE_WORLD_SIZE) == (total, num_gpus)
        assert s.MAX_ITER * s.IMS_PER_BATCH == base_images == r.images_seen
        assert s.BASE_LR == pytest.approx(0.02 * total / 16)
        assert [step * total for step in s.STEPS] == [60000 * 16, 80000 * 16]
        assert s.WARMUP_ITERS * total == 1000 * 16  # warm-up kept in images
        assert s.CHECKPOINT_PERIOD * total == 5000 * 16


def test_images_per_gpu_one_on_one_gpu_matches_the_family_file(tmp_path):
    """The derived 1-image config has the solver of configs/..._gn_1img.yaml scaled to 1 GPU."""
    cfg = derive_run_config(base_cfg(), "GN", images_per_gpu=1, seed=0, output_dir=str(tmp_path), num_gpus=8)
    family = add_gn_config(get_cfg())
    family.merge_from_file(GN_1X.replace("_gn.yaml", "_gn_1img.yaml"))
    for key in ("IMS_PER_BATCH", "REFERENCE_WORLD_SIZE", "BASE_LR", "MAX_ITER", "STEPS", "WARMUP_ITERS"):
        assert cfg.SOLVER[key] == family.SOLVER[key], key


def test_schedule_that_rounds_differently_is_refused(tmp_path):
    base = base_cfg()
    base.SOLVER.MAX_ITER = 10  # 160 images: not a whole number of 3-image iterations
    with pytest.raises(
        ValueError,
        match=r"gn_3img_seed0: 159, gn_1img_seed0: 160.*MAX_ITER 10 x "
        r"IMS_PER_BATCH 16 = 160 images.*\[1, 3\] images/iteration",
    ):
        plan_sweep(base, ["GN"], [1, 3], [0], str(tmp_path))


def test_repeated_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Repeated images per GPU in \[2, 2\]"):
        plan_sweep(base_cfg(), ["GN"], [2, 2], [0], str(tmp_path))
    with pytest.raises(ValueError, match=r"Repeated seeds"):
        plan_sweep(base_cfg(), ["GN"], [2], [1, 1], str(tmp_path))


def test_gn_weights_for_a_bn_backbone_are_refused(tmp_path):
    base = base_cfg("catalog://ImageNetPretrained/FAIR/R-50-GN")
    with pytest.raises(ValueError, match=r"'BN\*' puts BN layers.*R-50-GN.*--weights BN\*="):
        plan_sweep(base, ["GN", "BN*"], [2], [0], str(tmp_path), where="gn.yaml")
    # GN and GN+WS keep the GN weights; a BN preset gets the weights it is given.
    opts = {"FrozenBN": ["MODEL.WEIGHTS", "R-50.pkl", "MODEL.RESNETS.STRIDE_IN_1X1", "True"]}
    runs = plan_sweep(base, ["GN", "GN+WS", "BN*"], [2], [0], str(tmp_path), preset_opts=opts)
    assert [r.cfg.MODEL.WEIGHTS for r in runs] == ["catalog://ImageNetPretrained/FAIR/R-50-GN"] * 2 + [
        "R-50.pkl"
    ]
    assert [r.cfg.MODEL.RESNETS.STRIDE_IN_1X1 for r in runs] == [False, False, True]


def test_preset_opts_go_before_the_batch_rule(tmp_path):
    """A preset's own LR (at the base batch) is rescaled like the base's."""
    opts = {"BN": ["SOLVER.BASE_LR", "0.01"]}
    bn, gn = plan_sweep(base_cfg(), ["BN", "GN"], [4], [0], str(tmp_path), num_gpus=8, preset_opts=opts)
    assert (bn.cfg.SOLVER.MAX_ITER, bn.cfg.SOLVER.BASE_LR) == (45000, pytest.approx(0.02))
    assert (gn.cfg.SOLVER.MAX_ITER, gn.cfg.SOLVER.BASE_LR) == (45000, pytest.approx(0.04))


def test_preset_opts_that_change_the_images_seen_are_refused(tmp_path):
    opts = {"BN": ["SOLVER.MAX_ITER", "180000"]}
    with pytest.raises(ValueError, match=r"gn_4img_seed0: 1440000, bn_4img_seed0: 2880000.*--preset-opts"):
        plan_sweep(base_cfg(), ["BN", "GN"], [4], [0], str(tmp_path), num_gpus=8, preset_opts=opts)


def test_overrides_for_a_preset_that_is_not_swept_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"name presets that are not swept: \['bn'\]"):
        plan_sweep(
            base_cfg(), ["GN"], [2], [0], str(tmp_path), preset_opts={"BN": ["MODEL.WEIGHTS", "x.pkl"]}
        )


def test_syncbn_cell_on_one_process_is_refused_at_planning(tmp_path):
    with pytest.raises(ValueError, match="'SyncBN' needs several processes"):
        plan_sweep(base_cfg(), ["GN", "SyncBN"], [2], [0], str(tmp_path), num_gpus=1)
    assert len(plan_sweep(base_cfg(), ["SyncBN"], [2], [0], str(tmp_path), num_gpus=2)) == 1
