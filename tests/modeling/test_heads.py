"""gn_det's heads on their own: RPN, box head defaults, RetinaNet head keys, Cascade R-CNN."""
import pytest
import torch
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.modeling.proposal_generator.rpn import StandardRPNHead
from detectron2.utils.events import EventStorage
from modeling_helpers import (
    pin_fused_backend,
    MASK_RCNN_FPN_GN_YAML,
    RETINANET_YAML,
    narrow,
    synthetic_batch,
    use_gn_det_names,
    zoo_cfg,
)
from torch import nn

import gn_det  # noqa: F401  (registers the names)
from gn_det.layers import GNSettings, GroupNorm, build_norm_factory
from gn_det.modeling import GNConvFCHead, GNRetinaNetHead, GNRPNHead

LEVELS = [ShapeSpec(channels=64, stride=s) for s in (4, 8, 16, 32, 64)]
GN = build_norm_factory("GN", GNSettings(num_groups=32), "test")


def _fpn_cfg():
    return narrow(use_gn_det_names(zoo_cfg(MASK_RCNN_FPN_GN_YAML)))


def test_rpn_head_without_norm_is_detectron2s_head():
    cfg = _fpn_cfg()
    ours, theirs = GNRPNHead(cfg, LEVELS), StandardRPNHead(cfg, LEVELS)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert ours.conv.norm is None and ours.conv.bias is not None


@pytest.mark.parametrize("conv_dims", [[-1], [64, 64]])
def test_rpn_head_with_gn_normalizes_its_shared_convs_without_bias(conv_dims):
    cfg = _fpn_cfg()
    cfg.MODEL.RPN.NORM = "GN"
    cfg.MODEL.RPN.CONV_DIMS = conv_dims
    head = GNRPNHead(cfg, LEVELS)
    convs = [m for m in head.conv.modules() if isinstance(m, Conv2d)]
    assert len(convs) == len(conv_dims)
    for conv in convs:
        assert isinstance(conv.norm, GroupNorm) and conv.norm.num_groups == 32
        assert conv.bias is None and isinstance(conv.activation, nn.ReLU)
    keys = set(head.state_dict())
    assert not any(k.startswith("conv") and k.endswith(".bias") and ".norm." not in k for k in keys)
    assert head.objectness_logits.bias is not None  # predictors are never normalized
    features = [torch.randn(2, 64, 16 // 2**i, 16 // 2**i) for i in range(5)]
    logits, deltas = head(features)
    assert [t.shape for t in logits] == [(2, 3, 16 // 2**i, 16 // 2**i) for i in range(5)]
    assert [t.shape[1] for t in deltas] == [12] * 5


def test_box_head_defaults_to_4conv1fc():
    head = GNConvFCHead(ShapeSpec(channels=256, height=7, width=7), conv_norm=GN)
    assert len(head.conv_norm_relus) == 4 and len(head.fcs) == 1
    assert head.output_shape.channels == 1024
    cfg = _fpn_cfg()  # its base config asks for 0 convs and 2 fcs; NUM_CONV=NUM_FC=0 means 4conv1fc
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 0, 0
    head = GNConvFCHead(cfg, ShapeSpec(channels=64, height=7, width=7))
    assert len(head.conv_norm_relus) == 4 and len(head.fcs) == 1


def test_box_head_follows_num_conv_and_num_fc_and_drops_bias_when_normed():
    cfg = _fpn_cfg()
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2, 3
    head = GNConvFCHead(cfg, ShapeSpec(channels=64, height=7, width=7))
    assert len(head.conv_norm_relus) == 2 and len(head.fcs) == 3
    assert all(c.bias is None and isinstance(c.norm, GroupNorm) for c in head.conv_norm_relus)
    cfg.MODEL.ROI_BOX_HEAD.NORM = ""
    head = GNConvFCHead(cfg, ShapeSpec(channels=64, height=7, width=7))
    assert all(c.bias is not None and c.norm is None for c in head.conv_norm_relus)
    out = head(torch.randn(5, 64, 7, 7))
    assert out.shape == (5, 128)


def _retinanet_heads(norm="GN"):
    cfg = narrow(zoo_cfg(RETINANET_YAML))
    cfg.MODEL.RETINANET.NORM = norm
    return GNRetinaNetHead(cfg, LEVELS), RetinaNetHead(cfg, LEVELS)


def test_retinanet_head_holds_conv_gn_relu_as_one_conv_with_detectron2_keys():
    ours, theirs = _retinanet_heads()
    for subnet in (ours.cls_subnet, ours.bbox_subnet):
        assert len(subnet) == 4
        for conv in subnet:
            assert isinstance(conv, Conv2d) and isinstance(conv.norm, GroupNorm)  # or its fused subclass
            assert isinstance(conv.activation, nn.ReLU) and conv.bias is not None
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "cls_subnet.1.weight" in theirs.state_dict()  # conv 0's GN in Detectron2's layout


def test_retinanet_head_loads_detectron2_weights_and_matches_its_outputs():
    ours, theirs = _retinanet_heads()
    with torch.no_grad():
        for value in theirs.state_dict().values():
            value.add_(0.1 * torch.randn_like(value))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    pin_fused_backend(ours)  # the architecture is compared here, not the kernels' rounding
    features = [torch.randn(2, 64, 16 // 2**i, 16 // 2**i) for i in range(5)]
    for ours_out, their_out in zip(ours(features), theirs(features)):
        for a, b in zip(ours_out, their_out):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    theirs.load_state_dict(ours.state_dict(), strict=True)


def test_retinanet_head_reports_missing_keys_in_detectron2_spelling():
    ours, _ = _retinanet_heads()
    state = ours.state_dict()
    del state["cls_subnet.4.weight"], state["bbox_subnet.10.bias"]
    result = ours.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["bbox_subnet.10.bias", "cls_subnet.4.weight"]
    assert result.unexpected_keys == []


def test_retinanet_head_without_norm_keeps_detectron2_modules():
    ours, theirs = _retinanet_heads(norm="")
    assert repr(ours.cls_subnet) == repr(theirs.cls_subnet)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_cascade_rcnn_uses_gn_conv_fc_head_in_every_stage():
    cfg = _fpn_cfg()
    cfg.MODEL.ROI_HEADS.NAME = "CascadeROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 4, 1
    model = build_model(cfg)
    heads = model.roi_heads.box_head
    assert len(heads) == 3
    for head in heads:
        assert type(head) is GNConvFCHead and len(head.conv_norm_relus) == 4
        assert all(isinstance(c.norm, GroupNorm) for c in head.conv_norm_relus)
    model.train()
    with EventStorage(0):
        losses = model(synthetic_batch())
    assert {f"loss_box_reg_stage{i}" for i in range(3)} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for head in heads for p in head.parameters())
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": x["image"]} for x in synthetic_batch()])
    assert len(outputs) == 2
