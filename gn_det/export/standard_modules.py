"""The model that gets exported: gn_det's training-time convs replaced by Detectron2's plain ones.

Training uses ``WSConv2d`` (weights standardized at every forward), ``FusedGNActConv2d`` (GN and
ReLU in one kernel) and recompute scopes (saved-tensor hooks on whole components). None of that
is needed once the weights are fixed, and some of it cannot be scripted. ``standard_model``
returns a new model, as Detectron2's ``convert_frozen_batchnorm`` does: each such conv becomes a
``detectron2.layers.Conv2d`` with the same norm, activation and (standardized, for WS) weights,
the scopes are removed, and the original model is left untouched.
"""
import copy

import torch
from detectron2.layers import Conv2d
from torch import nn

from ..layers.fused_conv import FusedGNActConv2d
from ..layers.recompute import remove_recompute_scope
from ..layers.weight_std import WSConv2d

__all__ = ["fold_weight_standardization", "standard_conv", "standard_model"]


def standard_conv(conv: Conv2d) -> Conv2d:
    """A plain Detectron2 ``Conv2d`` computing what ``conv`` computes in eval mode.

    A WS conv's weight is standardized once here and stored as the new conv's ordinary weight
    (Weight Standardization folded); the norm and activation are copies of ``conv``'s.
    """
    weight = conv.effective_weight() if isinstance(conv, WSConv2d) else conv.weight
    plain = Conv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        norm=copy.deepcopy(conv.norm),
        activation=copy.deepcopy(conv.activation),
    )
    plain.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    plain.train(conv.training)
    return plain


def _replace_convs(module: nn.Module, kinds) -> nn.Module:
    if isinstance(module, kinds):
        return standard_conv(module)
    for name, child in module.named_children():
        new_child = _replace_convs(child, kinds)
        if new_child is not child:
            module.add_module(name, new_child)
    return module


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose WS convs (``WSConv2d``, ``WSFusedGNActConv2d``) are plain
    ``Conv2d`` with the standardized weights: the same outputs, no WS arithmetic. Other fused
    convs stay fused. ``model`` is not changed."""
    return _replace_convs(copy.deepcopy(model), (WSConv2d,))


def standard_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with only Detectron2/PyTorch modules where gn_det had
    its own: WS folded, fused GN+ReLU convs back to ``Conv2d`` + ``nn.GroupNorm`` (whose
    state_dict is the same), recompute scopes removed. Its outputs equal ``model``'s within
    float32 rounding; ``model`` is not changed. What ``gn_det.export`` exports."""
    result = _replace_convs(copy.deepcopy(model), (WSConv2d, FusedGNActConv2d))
    for m in result.modules():
        remove_recompute_scope(m)
    return result.eval()
