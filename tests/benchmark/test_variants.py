"""The benchmarked variants are one architecture that differs only in normalization."""
import pytest
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from torch import nn

from gn_det.benchmark import VARIANTS, WorkloadSpec, build_variant_cfg
from gn_det.benchmark.variants import COMMON_OVERRIDES

SPEC = WorkloadSpec(height=128, width=192, images_per_batch=2, instances_per_image=3,
                    proposals_per_image=96, rois_per_image=32, detections_per_image=8)
NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_MASK_HEAD.NORM")


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _norm_modules(module):
    return [m for m in module.modules() if isinstance(m, (nn.GroupNorm, FrozenBatchNorm2d))]


def test_configs_of_a_and_b_differ_only_in_norms():
    a, b = _flat(build_variant_cfg("a", SPEC)), _flat(build_variant_cfg("b", SPEC))
    assert {k for k in a if a[k] != b[k]} == set(NORM_KEYS)
    assert [a[k] for k in NORM_KEYS] == ["FrozenBN", "", "", ""]
    assert [b[k] for k in NORM_KEYS] == ["GN", "GN", "GN", "GN"]


def test_common_architecture_and_workload_keys_are_set():
    cfg = build_variant_cfg("a", SPEC)
    flat = _flat(cfg)
    for key, value in COMMON_OVERRIDES:
        assert flat[key] == value, key
    assert (cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC) == (4, 1)
    assert cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == 32
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 96
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 8
    assert cfg.is_frozen()


def test_variant_a_has_frozen_bn_backbone_and_no_norm_elsewhere():
    model = build_model(build_variant_cfg("a", SPEC))
    assert _norm_modules(model.backbone.bottom_up)
    assert all(isinstance(m, FrozenBatchNorm2d) for m in _norm_modules(model))
    fpn_and_heads = [model.roi_heads.box_head, model.roi_heads.mask_head] + [
        m for n, m in model.backbone.named_children() if n.startswith("fpn_")]
    assert all(not _norm_modules(m) for m in fpn_and_heads)


def test_variant_b_has_gn_everywhere_and_same_conv_count_as_a():
    a = build_model(build_variant_cfg("a", SPEC))
    b = build_model(build_variant_cfg("b", SPEC))
    for part in ("backbone", "roi_heads"):
        gn = _norm_modules(getattr(b, part))
        assert gn and all(type(m) is nn.GroupNorm and m.num_groups == 32 for m in gn), part
    assert len(b.roi_heads.box_head.conv_norm_relus) == 4
    convs = [sum(isinstance(m, nn.Conv2d) for m in x.modules()) for x in (a, b)]
    assert convs[0] == convs[1]


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(KeyError, match="Unknown benchmark variant 'e'; valid: a, b, c, d"):
        build_variant_cfg("e", SPEC)


def test_every_variant_has_a_name_and_description():
    assert list(VARIANTS) == ["a", "b", "c", "d"]
    assert [v.name for v in VARIANTS.values()] == ["BN*", "Detectron2 GN", "gn_det GN", "gn_det GN+WS"]


def test_variant_c_is_gn_dets_modules_with_the_same_weights_as_b():
    b = build_model(build_variant_cfg("b", SPEC))
    c = build_model(build_variant_cfg("c", SPEC))
    assert type(c.roi_heads.box_head).__name__ == "GNConvFCHead"
    assert type(c.roi_heads.mask_head).__name__ == "GNMaskRCNNConvUpsampleHead"
    assert type(c.proposal_generator.rpn_head).__name__ == "GNRPNHead"
    shapes_b = {k: v.shape for k, v in b.state_dict().items()}
    shapes_c = {k: v.shape for k, v in c.state_dict().items()}
    assert shapes_b == shapes_c
    assert len(_norm_modules(c)) == len(_norm_modules(b))


def test_variant_d_standardizes_exactly_the_normed_convs():
    from gn_det.layers import WSConv2d

    d = build_model(build_variant_cfg("d", SPEC))
    ws = [m for m in d.modules() if isinstance(m, WSConv2d)]
    normed = [m for m in d.modules() if isinstance(m, nn.Conv2d) and getattr(m, "norm", None) is not None]
    assert ws and len(ws) == len(normed) == len(_norm_modules(d))
    assert not isinstance(d.roi_heads.box_predictor, WSConv2d)


def test_r18_fpn_has_the_embedded_models_widths():
    from detectron2.config import get_cfg

    from gn_det.benchmark.variants import ARCHITECTURES
    from gn_det.config import add_gn_config

    root = __file__.rsplit("/tests/", 1)[0]
    embedded = get_cfg()
    add_gn_config(embedded)
    embedded.merge_from_file(f"{root}/configs/Synthetic/Base-Shapes-RCNN-FPN.yaml")
    bench = _flat(build_variant_cfg("c", SPEC, arch="R18-FPN"))
    expected = _flat(embedded)
    assert {key: bench[key] for key, _ in ARCHITECTURES["R18-FPN"]} == {
        key: expected[key] for key, _ in ARCHITECTURES["R18-FPN"]}
    assert bench["MODEL.RESNETS.DEPTH"] == 18 and bench["MODEL.FPN.OUT_CHANNELS"] == 64


def test_r18_fpn_variants_b_and_c_have_the_same_weights():
    b = build_model(build_variant_cfg("b", SPEC, freeze_at=0, arch="R18-FPN"))
    c = build_model(build_variant_cfg("c", SPEC, freeze_at=0, arch="R18-FPN"))
    shapes_b = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    assert shapes_b == {k: tuple(v.shape) for k, v in c.state_dict().items()}
    assert shapes_b["backbone.bottom_up.res2.0.conv1.weight"] == (64, 64, 3, 3)  # basic block
    assert sum(1 for k in shapes_b if k.endswith("conv1.weight") and ".res" in k) == 8  # 2 per stage


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(KeyError, match="Unknown benchmark architecture 'R34-FPN'; valid: R50-FPN, R18-FPN"):
        build_variant_cfg("b", SPEC, arch="R34-FPN")
