"""The builders with plain arguments (LazyConfig, Python): every norm string Detectron2's own
modules take works in gn_det's and gives Detectron2's state_dict; GN settings arrive as a dict
(LazyConfig) or with a NormFactory and reach every normed conv, as the YAML keys do."""
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.proposal_generator import build_rpn_head
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, MaskRCNNConvUpsampleHead
from torch import nn

from gn_det.layers import (
    FusedGNActConv2d,
    GNSettings,
    GroupNorm,
    WSConv2d,
    WSFusedGNActConv2d,
    build_norm_factory,
)
from gn_det.modeling import (
    GNConvFCHead,
    GNMaskRCNNConvUpsampleHead,
    GNRPNHead,
    make_gn_fpn,
    make_gn_resnet,
    resolve_norm,
)
from modeling_helpers import zoo_cfg

# Every name Detectron2's get_norm takes ("" is no norm). On a CPU-only machine SyncBN builds
# (torch's or Detectron2's naive one) as a module; only its forward needs a process group.
DETECTRON2_NORMS = ["", "BN", "SyncBN", "FrozenBN", "GN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N", "LN"]
ROI = ShapeSpec(channels=64, height=7, width=7)


def _shapes(module: nn.Module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _normed_convs(module: nn.Module):
    return [m for m in module.modules() if getattr(m, "norm", None) is not None]


@pytest.mark.parametrize("norm", DETECTRON2_NORMS)
def test_heads_take_every_detectron2_norm_name_and_keep_detectron2s_state_dict(norm):
    with torch.device("meta"):
        box = GNConvFCHead(ROI, conv_dims=[64, 64], fc_dims=[128], conv_norm=norm)
        d2_box = FastRCNNConvFCHead(ROI, conv_dims=[64, 64], fc_dims=[128], conv_norm=norm)
        mask = GNMaskRCNNConvUpsampleHead(ROI, num_classes=3, conv_dims=[64, 64], conv_norm=norm)
        d2_mask = MaskRCNNConvUpsampleHead(ROI, num_classes=3, conv_dims=[64, 64], conv_norm=norm)
    assert _shapes(box) == _shapes(d2_box)
    assert _shapes(mask) == _shapes(d2_mask)


@pytest.mark.parametrize("norm", ["BN", "FrozenBN", "GN", "naiveSyncBN"])
def test_backbone_and_fpn_take_norm_names_and_keep_detectron2s_state_dict(norm):
    with torch.device("meta"):
        resnet = make_gn_resnet(depth=50, norm=norm, out_features=["res2", "res3", "res4", "res5"])
        d2_resnet = ResNet(
            BasicStem(3, 64, norm=norm), ResNet.make_default_stages(50, norm=norm),
            out_features=["res2", "res3", "res4", "res5"], freeze_at=2,
        )
        fpn = make_gn_fpn(bottom_up=resnet, in_features=resnet._out_features, norm=norm, top_block=LastLevelMaxPool())
        d2_fpn = FPN(bottom_up=d2_resnet, in_features=d2_resnet._out_features, out_channels=256, norm=norm,
                     top_block=LastLevelMaxPool())
    assert _shapes(fpn) == _shapes(d2_fpn)


def test_rpn_head_takes_a_norm_name_and_builds_what_the_yaml_key_builds():
    # GNRPNHead(conv_norm="GN") raised TypeError before: the head called the string.
    cfg = zoo_cfg("Misc/mask_rcnn_R_50_FPN_3x_gn.yaml")
    cfg.MODEL.RPN.HEAD_NAME, cfg.MODEL.RPN.NORM = "GNRPNHead", "GN"
    shapes = [ShapeSpec(channels=256, stride=s) for s in (4, 8, 16, 32, 64)]
    with torch.device("meta"):
        from_yaml = build_rpn_head(cfg, shapes)
        plain = GNRPNHead(in_channels=256, num_anchors=3, conv_norm="GN")
    assert _shapes(plain) == _shapes(from_yaml)
    assert [type(m) for m in plain.modules()] == [type(m) for m in from_yaml.modules()]
    assert isinstance(plain.conv.norm, GroupNorm) and plain.conv.bias is None


def test_a_settings_dict_reaches_every_normed_conv():
    head = GNConvFCHead(ROI, conv_dims=[64, 64], fc_dims=[], conv_norm="GN",
                        conv_settings={"num_groups": 16, "weight_std": True, "fused": False})
    convs = _normed_convs(head)
    assert len(convs) == 2 and all(type(c) is WSConv2d for c in convs)
    assert all(c.norm.num_groups == 16 for c in convs)
    resnet = make_gn_resnet(depth=18, res2_out_channels=64, conv_settings={"weight_std": True})
    assert all(type(c) in (WSConv2d, WSFusedGNActConv2d) for c in _normed_convs(resnet))


def test_a_norm_factory_brings_its_own_settings():
    # Before: the heads applied WS only when conv_settings was passed as well.
    factory = build_norm_factory("GN", GNSettings(weight_std=True, fused=True))
    head = GNMaskRCNNConvUpsampleHead(ROI, num_classes=3, conv_dims=[64, 64], conv_norm=factory)
    convs = _normed_convs(head)
    assert len(convs) == 1 and type(convs[0]) is WSFusedGNActConv2d


def test_defaults_are_the_yaml_defaults_gn_fused_without_ws():
    head = GNConvFCHead(ROI, conv_dims=[64], fc_dims=[], conv_norm="GN")
    [conv] = _normed_convs(head)
    assert type(conv) is FusedGNActConv2d and conv.norm.num_groups == 32 and conv.norm.eps == 1e-5


def test_a_factory_and_different_settings_are_refused():
    factory = build_norm_factory("GN", GNSettings(num_groups=16))
    with pytest.raises(ValueError, match="GNConvFCHead.conv_norm.*num_groups=16.*num_groups=32"):
        GNConvFCHead(ROI, conv_dims=[64], fc_dims=[], conv_norm=factory, conv_settings={"num_groups": 32})


@pytest.mark.parametrize(
    "norm, settings, error, match",
    [
        ("GroupNorm", None, ValueError, r"Unknown norm 'GroupNorm' for x\.norm; valid: gn_det's 'BN'"),
        ("GN", {"groups": 8}, ValueError, r"unknown keys \['groups'\].*num_groups"),
        ("GN", 8, TypeError, r"must be GNSettings, a dict"),
        (32, None, TypeError, r"x\.norm must be a norm name.*got int 32"),
    ],
)
def test_bad_arguments_are_errors_that_name_them(norm, settings, error, match):
    with pytest.raises(error, match=match):
        resolve_norm(norm, settings, "x.norm")


def test_resnet_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"depth=7 is not supported; valid: \[18, 34, 50, 101, 152\]"):
        make_gn_resnet(depth=7)
    with pytest.raises(ValueError, match=r"num_groups=32 is not possible with depth=18"):
        make_gn_resnet(depth=18, res2_out_channels=64, num_groups=32)
