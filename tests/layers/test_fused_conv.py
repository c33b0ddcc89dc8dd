"""Switching Detectron2 Conv2d(norm=GN, activation=ReLU/None) to the fused path, and the config key."""

import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling.roi_heads.box_head import FastRCNNConvFCHead
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead
from modeling_helpers import assert_close_at_scale
from torch import nn

from gn_det import add_gn_config
from gn_det.config import gn_settings
from gn_det.layers import (
    FusedGNActConv2d,
    GNSettings,
    GroupNorm,
    WSConv2d,
    WSFusedGNActConv2d,
    apply_conv_settings,
    build_norm_factory,
    convert_to_fused_group_norm,
    convert_to_weight_std,
)


def _conv(activation, norm=None, cls=Conv2d):
    return cls(
        8,
        16,
        3,
        padding=1,
        bias=False,
        norm=norm if norm is not None else GroupNorm(16, 4),
        activation=activation,
    )


@pytest.mark.parametrize(
    "activation,kind",
    [
        (nn.ReLU(), "relu"),
        (nn.ReLU(inplace=True), "relu"),
        (F.relu, "relu"),
        (F.relu_, "relu"),
        (torch.relu, "relu"),
        (None, "identity"),
    ],
)
def test_gn_convs_with_relu_or_no_activation_are_fused_and_give_the_same_output(activation, kind):
    ref = _conv(activation)
    fused = convert_to_fused_group_norm(copy.deepcopy(ref))
    assert type(fused) is FusedGNActConv2d and fused.fused_activation == kind
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(fused(x), ref(x))


@pytest.mark.parametrize(
    "conv",
    [
        _conv(nn.SiLU()),  # another activation: the plain path is kept
        _conv(F.relu, norm=nn.BatchNorm2d(16)),  # another norm
        _conv(F.relu, norm=nn.GroupNorm(4, 16, affine=False)),
        Conv2d(8, 16, 1),  # no norm: predictors, RPN outputs
    ],
)
def test_other_convs_are_left_alone(conv):
    assert type(convert_to_fused_group_norm(conv)) is Conv2d


def test_detectron2s_own_groupnorm_is_fused_too():
    assert type(convert_to_fused_group_norm(_conv(F.relu, norm=nn.GroupNorm(4, 16)))) is FusedGNActConv2d


def test_state_dict_keys_and_values_are_unchanged_and_conversion_is_idempotent():
    model = nn.Sequential(_conv(F.relu), _conv(None, cls=Conv2d).__class__(16, 4, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    convert_to_fused_group_norm(model)
    convert_to_fused_group_norm(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        torch.testing.assert_close(after[k], before[k])
    assert len(model._forward_pre_hooks) == 1  # one scope, however often converted
    plain = nn.Sequential(_conv(F.relu), Conv2d(16, 4, 1))
    plain.load_state_dict(after)  # strict, both ways
    model.load_state_dict(plain.state_dict())


@pytest.mark.parametrize("ws_first", [True, False])
def test_weight_standardization_composes_in_either_order(ws_first):
    ref = convert_to_weight_std(_conv(F.relu), eps=1e-4)
    model = _conv(F.relu)
    model.load_state_dict(ref.state_dict())
    if ws_first:
        convert_to_fused_group_norm(convert_to_weight_std(model, eps=1e-4))
    else:
        convert_to_weight_std(convert_to_fused_group_norm(model), eps=1e-4)
    assert type(model) is WSFusedGNActConv2d and isinstance(model, WSConv2d) and model.ws_eps == 1e-4
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    torch.testing.assert_close(model(x), ref(x))
    model(x).sum().backward()
    ws_grad = model.weight.grad.clone()
    model.weight.grad = None
    ref(x).sum().backward()
    torch.testing.assert_close(ws_grad, ref.weight.grad)


def test_apply_conv_settings_switches_the_fused_path_on_and_off():
    def block():
        return nn.Sequential(_conv(F.relu))

    assert type(apply_conv_settings(block(), GNSettings(fused=False))[0]) is Conv2d
    assert type(apply_conv_settings(block(), GNSettings(fused=True))[0]) is FusedGNActConv2d
    both = apply_conv_settings(block(), GNSettings(fused=True, weight_std=True, ws_eps=1e-3))[0]
    assert type(both) is WSFusedGNActConv2d and both.ws_eps == 1e-3


def _gn_head(cls, settings, **kwargs):
    torch.manual_seed(0)
    norm = build_norm_factory("GN", settings, "MODEL.ROI_BOX_HEAD.NORM")
    return apply_conv_settings(cls(conv_norm=norm, **kwargs), settings)


@pytest.mark.parametrize("num_rois", [300, 0])
def test_detectron2_box_head_trains_the_same_fused(num_rois):
    # Detectron2's own 4conv1fc head, built through the single entry point apply_conv_settings;
    # hundreds of RoIs at 7x7, and 0 RoIs (an image without proposals).
    kwargs = dict(input_shape=ShapeSpec(channels=32, height=7, width=7), conv_dims=[32] * 4, fc_dims=[64])
    ref = _gn_head(FastRCNNConvFCHead, GNSettings(fused=False), **kwargs)
    fused = _gn_head(FastRCNNConvFCHead, GNSettings(fused=True), **kwargs)
    assert sum(type(m) is FusedGNActConv2d for m in fused.modules()) == 4
    x = torch.randn(num_rois, 32, 7, 7)
    outs, grads = [], []
    for head in (ref, fused):
        out = head(x)
        out.sum().backward()
        outs.append(out)
        grads.append([p.grad for p in head.parameters()])
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-4)
    for g_fused, g_ref in zip(grads[1], grads[0]):
        assert_close_at_scale(g_fused, g_ref)  # sums over hundreds of RoIs


def test_detectron2_mask_head_in_eval_mode_matches():
    kwargs = dict(input_shape=ShapeSpec(channels=16, height=14, width=14), num_classes=3, conv_dims=[16] * 4)
    ref = _gn_head(MaskRCNNConvUpsampleHead, GNSettings(num_groups=4, fused=False), **kwargs).eval()
    fused = _gn_head(MaskRCNNConvUpsampleHead, GNSettings(num_groups=4, fused=True), **kwargs).eval()
    x = torch.randn(5, 16, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(fused.layers(x), ref.layers(x))


def test_config_key_reaches_gn_settings_with_per_component_override():
    cfg = get_cfg()
    add_gn_config(cfg)
    assert cfg.MODEL.GN.FUSED is True
    assert gn_settings(cfg, "BOX_HEAD").fused is True
    cfg.merge_from_list(["MODEL.GN.FUSED", "False", "MODEL.GN.MASK_HEAD.FUSED", "True"])
    assert gn_settings(cfg, "BACKBONE").fused is False
    assert gn_settings(cfg, "MASK_HEAD").fused is True


def test_fused_conv_compiles_for_inference_with_torch_compile():
    # The CPU kernels are torch.library ops with fake (shape-only) kernels, so dynamo traces
    # them in one graph instead of failing on an unknown operator.
    model = nn.Sequential(_conv(nn.ReLU())).eval()
    fused = convert_to_fused_group_norm(copy.deepcopy(model))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        compiled = torch.compile(fused, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), model(x))
