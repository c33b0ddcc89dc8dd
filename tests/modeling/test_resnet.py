"""gn_det's ResNet/ResNeXt: Detectron2's layout for every depth, freezing, init, ReLU placement."""
import math

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from modeling_helpers import MASK_RCNN_FPN_GN_YAML, pin_fused_backend, zoo_cfg
from torch import nn

from gn_det.layers import GroupNorm
from gn_det.modeling import (
    GNBasicBlock,
    GNBottleneckBlock,
    GNRes5ROIHeads,
    build_gn_resnet_backbone,
)

RGB = ShapeSpec(channels=3)


def _resnet_cfg(depth=50, norm="GN", **resnets):
    cfg = zoo_cfg(MASK_RCNN_FPN_GN_YAML)
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NORM = norm
    if depth < 50:
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    for key, value in resnets.items():
        cfg.MODEL.RESNETS[key] = value
    return cfg


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "depth, resnets",
    [
        (18, {}),
        (34, {}),
        (50, {}),
        (101, {}),
        (152, {}),
        (101, {"NUM_GROUPS": 32, "WIDTH_PER_GROUP": 8}),  # ResNeXt-101 32x8d
        (50, {"STRIDE_IN_1X1": True, "RES5_DILATION": 2}),
    ],
    ids=["R18", "R34", "R50", "R101", "R152", "X101-32x8d", "R50-msra-dilated"],
)
def test_layout_equals_detectron2_resnet(depth, resnets):
    cfg = _resnet_cfg(depth, **resnets)
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = build_gn_resnet_backbone(cfg, RGB)
        theirs = build_resnet_backbone(cfg, RGB)
    assert list(_shapes(ours)) == list(_shapes(theirs))
    assert _shapes(ours) == _shapes(theirs)
    assert ours.output_shape() == theirs.output_shape()
    def conv_geometry(module):
        return {
            name: (m.kernel_size, m.stride, m.padding, m.dilation, m.groups)
            for name, m in module.named_modules()
            if isinstance(m, nn.Conv2d)
        }

    assert conv_geometry(ours) == conv_geometry(theirs)


def test_basic_block_forward_equals_detectron2_resnet_with_same_weights():
    # (Bottleneck blocks are compared inside whole models in test_compat.py.)
    cfg = _resnet_cfg(18)
    ours, theirs = build_gn_resnet_backbone(cfg, RGB), build_resnet_backbone(cfg, RGB)
    with torch.no_grad():
        for value in theirs.state_dict().values():
            value.add_(0.1 * torch.randn_like(value))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    pin_fused_backend(ours)  # the architecture is compared here, not the kernels' rounding
    x = torch.randn(2, 3, 48, 48)
    ours_out, their_out = ours(x), theirs(x)
    assert list(ours_out) == ["res2", "res3", "res4", "res5"]
    for name in their_out:
        torch.testing.assert_close(ours_out[name], their_out[name], atol=1e-5, rtol=0)


def test_relu_after_norm_is_the_conv_activation():
    resnet = build_gn_resnet_backbone(_resnet_cfg(50), RGB)
    assert isinstance(resnet.stem.conv1.activation, nn.ReLU)
    blocks = [b for stage in resnet.stages for b in stage]
    assert len(blocks) == 16 and all(isinstance(b, GNBottleneckBlock) for b in blocks)
    for block in blocks:
        assert isinstance(block.conv1.activation, nn.ReLU)
        assert isinstance(block.conv2.activation, nn.ReLU)
        # The residual add comes between conv3's norm and the block's ReLU.
        assert block.conv3.activation is None
        assert block.shortcut is None or block.shortcut.activation is None

    basic = build_gn_resnet_backbone(_resnet_cfg(18), RGB)
    for block in (b for stage in basic.stages for b in stage):
        assert isinstance(block, GNBasicBlock)
        assert isinstance(block.conv1.activation, nn.ReLU) and block.conv2.activation is None


@pytest.mark.parametrize("freeze_at", [0, 2, 5])
def test_freeze_at_freezes_gn_parameters_of_frozen_stages(freeze_at):
    cfg = _resnet_cfg(18)
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    resnet = build_gn_resnet_backbone(cfg, RGB)
    stage_index = {"stem": 1, "res2": 2, "res3": 3, "res4": 4, "res5": 5}
    gn_params = 0
    for name, param in resnet.named_parameters():
        frozen = stage_index[name.split(".")[0]] <= freeze_at
        assert param.requires_grad == (not frozen), name
        gn_params += ".norm." in name
    assert gn_params > 0
    assert all(isinstance(m.norm, GroupNorm) for m in resnet.modules() if hasattr(m, "norm"))


def test_freeze_at_turns_bn_of_frozen_stages_into_frozen_bn():
    cfg = _resnet_cfg(18, norm="BN")
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    resnet = build_gn_resnet_backbone(cfg, RGB)
    assert isinstance(resnet.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(resnet.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(resnet.res3[0].conv1.norm, nn.BatchNorm2d)


def _last_and_other_norm_weights(blocks):
    last, other = [], []
    for block in blocks:
        last_conv = block.conv3 if isinstance(block, GNBottleneckBlock) else block.conv2
        for child in (block.conv1, block.conv2, getattr(block, "conv3", None), block.shortcut):
            if child is not None:
                (last if child is last_conv else other).append(child.norm.weight)
    return torch.cat(last), torch.cat(other)


@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_residual_zeroes_only_the_last_norm_of_each_block(depth):
    cfg = _resnet_cfg(depth, ZERO_INIT_RESIDUAL=True)
    blocks = [b for stage in build_gn_resnet_backbone(cfg, RGB).stages for b in stage]
    last, other = _last_and_other_norm_weights(blocks)
    assert torch.all(last == 0)
    assert torch.all(other == 1)


def test_without_zero_init_residual_all_gammas_are_one():
    blocks = [b for s in build_gn_resnet_backbone(_resnet_cfg(18), RGB).stages for b in s]
    last, other = _last_and_other_norm_weights(blocks)
    assert torch.all(last == 1) and torch.all(other == 1)


def test_zero_init_residual_reaches_the_res5_roi_head():
    cfg = _resnet_cfg(50, ZERO_INIT_RESIDUAL=True)
    res5, out_channels = GNRes5ROIHeads._build_res5_block(cfg)
    assert out_channels == 2048
    assert all(torch.all(block.conv3.norm.weight == 0) for block in res5)
    assert all(isinstance(block.conv1.activation, nn.ReLU) for block in res5)


def test_convs_have_c2_msra_init():
    # Detectron2's c2_msra_fill: kaiming normal, fan_out, ReLU gain -> std sqrt(2 / fan_out).
    conv = build_gn_resnet_backbone(_resnet_cfg(50), RGB).res4[1].conv2  # 256 -> 256, 3x3
    expected_std = math.sqrt(2.0 / (conv.out_channels * 3 * 3))
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.02
    assert abs(conv.weight.mean().item()) < 0.01 * expected_std * 10


@pytest.mark.parametrize(
    "resnets, key",
    [
        ({"DEPTH": 42}, "MODEL.RESNETS.DEPTH=42"),
        ({"DEPTH": 18, "RES2_OUT_CHANNELS": 128}, "MODEL.RESNETS.RES2_OUT_CHANNELS=128"),
        ({"DEPTH": 34, "RES2_OUT_CHANNELS": 64, "NUM_GROUPS": 32}, "MODEL.RESNETS.NUM_GROUPS=32"),
        ({"RES5_DILATION": 3}, "MODEL.RESNETS.RES5_DILATION=3"),
        ({"DEFORM_ON_PER_STAGE": [False, True, True, True]}, "MODEL.RESNETS.DEFORM_ON_PER_STAGE"),
        ({"OUT_FEATURES": ["res4", "linear"]}, "MODEL.RESNETS.OUT_FEATURES"),
    ],
)
def test_bad_resnet_config_fails_naming_the_key(resnets, key):
    cfg = _resnet_cfg(50)
    for name, value in resnets.items():
        cfg.MODEL.RESNETS[name] = value
    with pytest.raises(ValueError, match=key.replace("[", r"\[")):
        build_gn_resnet_backbone(cfg, RGB)


def test_res5_roi_head_rejects_basic_block_resnets():
    with pytest.raises(ValueError, match="MODEL.RESNETS.DEPTH >= 50"):
        GNRes5ROIHeads._build_res5_block(_resnet_cfg(34))


def test_zero_init_residual_leaves_frozen_bn_gammas_alone():
    # A FrozenBN gamma never learns; zeroing it would disable every residual branch for good.
    from detectron2.layers import FrozenBatchNorm2d

    from gn_det.modeling.resnet import GNBottleneckBlock

    block = GNBottleneckBlock(64, 256, bottleneck_channels=64, norm="FrozenBN", zero_init_residual=True)
    assert isinstance(block.conv3.norm, FrozenBatchNorm2d)
    assert torch.equal(block.conv3.norm.weight, torch.ones(256))
    gn_block = GNBottleneckBlock(64, 256, bottleneck_channels=64, norm="GN", zero_init_residual=True)
    assert torch.equal(gn_block.conv3.norm.weight.detach(), torch.zeros(256))
