"""The one place where a built component's normed convs change class: Weight Standardization and
the fused GN+ReLU path.

Detectron2's ResNet, FPN and heads construct ``detectron2.layers.Conv2d`` themselves. Switching
the class of those instances (same parameters, same state_dict keys; Detectron2's
``convert_frozen_batchnorm`` makes the same kind of change by returning new modules) is how WS and
the fused op reach convs gn_det does not construct.
"""
from detectron2.layers import Conv2d
from torch import nn

from .fused_conv import FusedGNActConv2d, WSFusedGNActConv2d, fusable_conv
from .norm_factory import GNSettings
from .recompute import install_recompute_scope
from .weight_std import WSConv2d

__all__ = ["apply_conv_settings", "convert_to_weight_std", "convert_to_fused_group_norm"]


def convert_to_weight_std(module: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Turn every Detectron2 ``Conv2d`` that carries a norm into a ``WSConv2d``, in place.

    Convs without a norm (predictors, RPN outputs) keep their plain weights, as in GN+WS. A conv
    already switched to the fused path stays fused and gains WS. Returns ``module``.
    """
    for m in module.modules():
        if type(m) is Conv2d and m.norm is not None:
            m.__class__ = WSConv2d
            m.ws_eps = eps
        elif type(m) is FusedGNActConv2d:
            m.__class__ = WSFusedGNActConv2d
            m.ws_eps = eps
    return module


def convert_to_fused_group_norm(module: nn.Module) -> nn.Module:
    """Switch every Detectron2 ``Conv2d``/``WSConv2d`` with an affine GroupNorm ``norm`` and a
    ReLU or no activation to the fused path, in place, and make ``module`` a recompute scope (the
    layers after a fused conv keep a recipe instead of its output).

    Convs with another norm or activation are left as they are. Idempotent. Returns ``module``.
    """
    for m in module.modules():
        if type(m) not in (Conv2d, WSConv2d):
            continue
        kind = fusable_conv(m)
        if kind is None:
            continue
        m.__class__ = WSFusedGNActConv2d if type(m) is WSConv2d else FusedGNActConv2d
        m.fused_activation = kind
    install_recompute_scope(module)
    return module


def apply_conv_settings(module: nn.Module, settings: GNSettings) -> nn.Module:
    """Apply ``settings`` to the normed Detectron2 ``Conv2d`` layers of a built component.

    Every gn_det builder calls this once on what it built: Weight Standardization
    (``settings.weight_std``), then the fused GN+ReLU/identity path (``settings.fused``). Both
    compose (``WSFusedGNActConv2d``). Parameters and state_dict keys are unchanged. Returns
    ``module``.
    """
    if settings.weight_std:
        convert_to_weight_std(module, settings.ws_eps)
    if settings.fused:
        convert_to_fused_group_norm(module)
    return module
