"""The model that gets exported: gn_det's training-time convs replaced by Detectron2's plain ones.

Training uses ``WSConv2d`` (weights standardized at every forward), ``FusedGNActConv2d`` (GN and
ReLU in one kernel) and recompute scopes (saved-tensor hooks on whole components). None of that
is needed once the weights are fixed, and some of it cannot be scripted. ``standard_model``
returns a new model (a deep copy, so the tensors are copied, as Detectron2's
``convert_frozen_batchnorm`` returns new modules) in which each such conv is a
``detectron2.layers.Conv2d`` with the same norm and activation and, for WS, the standardized
weight stored as its ordinary weight; the scopes are removed; the original model is untouched.
"""

import copy

import torch
from detectron2.layers import Conv2d
from torch import nn

from ..layers.fused_conv import FusedGNActConv2d, WSFusedGNActConv2d
from ..layers.recompute import remove_recompute_scope
from ..layers.weight_std import WSConv2d

__all__ = ["fold_weight_standardization", "standard_model"]


def _switch(conv: Conv2d, to: type) -> None:
    # The class is switched on the copy rather than the module replaced: Detectron2 modules also
    # hold their convs in plain Python lists (FPN's lateral_convs/output_convs), which a
    # replaced child would leave pointing at the old conv.
    if isinstance(conv, WSConv2d):
        with torch.no_grad():
            conv.weight.copy_(conv.effective_weight())
        conv.__dict__.pop("ws_eps", None)
    if not issubclass(to, FusedGNActConv2d):
        for attr in ("fused_activation", "fused_backend"):
            conv.__dict__.pop(attr, None)
    conv.__class__ = to


def _convert(model: nn.Module, target) -> nn.Module:
    result = copy.deepcopy(model)
    for m in result.modules():
        to = target(m)
        if to is not None:
            _switch(m, to)
    return result


def _without_ws(m):
    if isinstance(m, WSFusedGNActConv2d):
        return FusedGNActConv2d
    return Conv2d if isinstance(m, WSConv2d) else None


def _plain(m):
    return Conv2d if isinstance(m, (WSConv2d, FusedGNActConv2d)) else None


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose WS convs (``WSConv2d``, ``WSFusedGNActConv2d``) are plain
    ``Conv2d`` with the standardized weights: the same outputs, no WS arithmetic. Other fused
    convs stay fused. ``model`` is not changed."""
    return _convert(model, _without_ws)


def standard_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with only Detectron2/PyTorch modules where gn_det had
    its own: WS folded, fused GN+ReLU convs back to ``Conv2d`` + ``nn.GroupNorm`` (whose
    state_dict is the same), recompute scopes removed. Its outputs equal ``model``'s within
    float32 rounding; ``model`` is not changed. What ``gn_det.export`` exports."""
    result = _convert(model, _plain)
    for m in result.modules():
        remove_recompute_scope(m)
    return result.eval()
