"""Norm presets of the sweep: names, the keys they set, and the models they build."""

import os

import pytest
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from torch import nn

from gn_det import add_gn_config
from gn_det.layers import GroupNorm, WSConv2d
from gn_det.sweep.norm_presets import apply_norm_preset, parse_norm_preset, parse_norm_presets

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCO = os.path.join(REPO, "configs", "COCO-InstanceSegmentation")
NORM_KEYS = (
    "MODEL.RESNETS.NORM",
    "MODEL.FPN.NORM",
    "MODEL.RPN.NORM",
    "MODEL.ROI_BOX_HEAD.NORM",
    "MODEL.ROI_MASK_HEAD.NORM",
    "MODEL.GN.WEIGHT_STD",
    "MODEL.GN.CHANNELS_PER_GROUP",
)


def load(name):
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(os.path.join(COCO, name))
    return cfg


def value(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(
    "preset, family_file, processes",
    [
        ("BN*", "mask_rcnn_R_50_FPN_1x_frozenbn.yaml", 1),
        ("BN", "mask_rcnn_R_50_FPN_1x_bn.yaml", 1),
        ("SyncBN", "mask_rcnn_R_50_FPN_1x_syncbn.yaml", 8),
        ("GN+WS", "mask_rcnn_R_50_FPN_1x_gn_ws.yaml", 1),
        ("GN_16ch", "mask_rcnn_R_50_FPN_1x_gn_16ch.yaml", 1),
    ],
)
def test_preset_sets_the_norm_keys_of_the_family_config(preset, family_file, processes):
    """Applied to the GN config, each preset gives the norm keys its twin in configs/ has."""
    out = apply_norm_preset(load("mask_rcnn_R_50_FPN_1x_gn.yaml"), preset, num_processes=processes)
    twin = load(family_file)
    assert {k: value(out, k) for k in NORM_KEYS} == {k: value(twin, k) for k in NORM_KEYS}


def test_gn_preset_undoes_a_bn_config():
    out = apply_norm_preset(load("mask_rcnn_R_50_FPN_1x_frozenbn.yaml"), "GN")
    gn = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    assert {k: value(out, k) for k in NORM_KEYS} == {k: value(gn, k) for k in NORM_KEYS}


def test_preset_leaves_the_input_and_other_keys_alone():
    base = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    before = base.dump()
    out = apply_norm_preset(base, "BN")
    assert base.dump() == before
    assert out.MODEL.WEIGHTS == base.MODEL.WEIGHTS and out.SOLVER.dump() == base.SOLVER.dump()


def test_rpn_is_normalized_only_where_the_base_normalizes_it():
    base = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    assert apply_norm_preset(base, "BN").MODEL.RPN.NORM == ""
    base.MODEL.RPN.NORM = "GN"
    assert apply_norm_preset(base, "BN").MODEL.RPN.NORM == "BN"
    assert apply_norm_preset(base, "BN*").MODEL.RPN.NORM == ""


def test_gn_preset_clears_a_per_component_weight_std_override():
    base = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    base.MODEL.GN.FPN.WEIGHT_STD = True
    out = apply_norm_preset(base, "GN")
    assert out.MODEL.GN.WEIGHT_STD is False and out.MODEL.GN.FPN.WEIGHT_STD is None


def test_frozen_bn_turns_off_zero_init_residual():
    """A zero-initialized gamma that never trains would cut every residual branch for good."""
    base = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    base.MODEL.RESNETS.ZERO_INIT_RESIDUAL = True
    assert apply_norm_preset(base, "BN*").MODEL.RESNETS.ZERO_INIT_RESIDUAL is False
    assert apply_norm_preset(base, "GN").MODEL.RESNETS.ZERO_INIT_RESIDUAL is True


def test_syncbn_with_one_process_is_refused():
    with pytest.raises(ValueError, match=r"'SyncBN' needs several processes.*--num-gpus N"):
        apply_norm_preset(load("mask_rcnn_R_50_FPN_1x_gn.yaml"), "SyncBN", num_processes=1)


def test_ws_on_detectron2_components_is_refused():
    base = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    base.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    base.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    with pytest.raises(ValueError, match=r"'GN\+WS'.*build_resnet_fpn_backbone.*FastRCNNConvFCHead"):
        apply_norm_preset(base, "GN+WS", where="my.yaml")
    # Plain GN works with Detectron2's own components (they build GroupNorm from "GN").
    assert apply_norm_preset(base, "GN").MODEL.FPN.NORM == "GN"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("BN*", ("BN*", "frozenbn", "FrozenBN", False, 0)),
        ("frozenbn", ("BN*", "frozenbn", "FrozenBN", False, 0)),
        ("bn", ("BN", "bn", "BN", False, 0)),
        ("syncbn", ("SyncBN", "syncbn", "SyncBN", False, 0)),
        ("gn", ("GN", "gn", "GN", False, 0)),
        ("gn_ws", ("GN+WS", "gn_ws", "GN", True, 0)),
        ("GN_16ch", ("GN_16ch", "gn_16ch", "GN", False, 16)),
        ("gn8ch", ("GN_8ch", "gn_8ch", "GN", False, 8)),
        ("GN+WS_4ch", ("GN+WS_4ch", "gn_ws_4ch", "GN", True, 4)),
    ],
)
def test_preset_names(name, expected):
    p = parse_norm_preset(name)
    assert (p.name, p.slug, p.norm, p.weight_std, p.channels_per_group) == expected


def test_unknown_and_repeated_presets_are_errors():
    with pytest.raises(ValueError, match=r"Unknown norm preset 'LayerNorm'; valid: BN\*, BN, SyncBN, GN"):
        parse_norm_preset("LayerNorm")
    with pytest.raises(ValueError, match=r"'BN\*' and 'FrozenBN' are the same preset"):
        parse_norm_presets(["BN*", "FrozenBN"])
    with pytest.raises(ValueError, match="channels per group must be >= 1"):
        parse_norm_preset("GN_0ch")


def _small_cfg():
    """A small R18-FPN Mask R-CNN on gn_det's components (builds in about a second)."""
    cfg = load("mask_rcnn_R_50_FPN_1x_gn.yaml")
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ROI_BOX_HEAD.CONV_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 64
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return cfg


def _norm_types(module):
    kinds = (FrozenBatchNorm2d, nn.BatchNorm2d, GroupNorm, nn.GroupNorm)
    return {type(m) for m in module.modules() if isinstance(m, kinds)}


@pytest.mark.parametrize(
    "preset, backbone, heads, groups",
    [
        ("BN*", {FrozenBatchNorm2d}, set(), None),
        ("BN", {nn.BatchNorm2d}, {nn.BatchNorm2d}, None),
        ("GN", {GroupNorm}, {GroupNorm}, 32),
        ("GN_16ch", {GroupNorm}, {GroupNorm}, 4),  # 64 channels / 16 per group
    ],
)
def test_preset_builds_those_layers(preset, backbone, heads, groups):
    model = build_model(apply_norm_preset(_small_cfg(), preset))
    assert _norm_types(model.backbone.bottom_up) == backbone
    fpn_convs = [m for n, m in model.backbone.named_modules() if n.startswith(("fpn_", "lateral"))]
    for part in fpn_convs + [model.roi_heads.box_head, model.roi_heads.mask_head]:
        assert _norm_types(part) == heads
    if groups is not None:
        assert model.roi_heads.box_head.conv1.norm.num_groups == groups


def test_gn_ws_preset_builds_weight_standardized_convs():
    model = build_model(apply_norm_preset(_small_cfg(), "GN+WS"))
    assert isinstance(model.roi_heads.box_head.conv1, WSConv2d)
    assert not isinstance(
        build_model(apply_norm_preset(_small_cfg(), "GN")).roi_heads.box_head.conv1, WSConv2d
    )
