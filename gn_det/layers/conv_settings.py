"""Per-component conv options applied after a Detectron2 component is built."""
from torch import nn

from .fused_conv import convert_to_fused_group_norm
from .norm_factory import GNSettings
from .weight_std import convert_to_weight_std

__all__ = ["apply_conv_settings"]


def apply_conv_settings(module: nn.Module, settings: GNSettings) -> nn.Module:
    """Apply ``settings`` to the normed Detectron2 ``Conv2d`` layers of a built component.

    Every gn_det builder calls this once on what it built, so options that change how a
    conv-norm-activation runs are switched in one place: Weight Standardization
    (``settings.weight_std``), then the fused GN+ReLU/identity path (``settings.fused``), which
    also makes ``module``'s forward a recompute scope. Both compose (``WSFusedGNActConv2d``).
    Parameters and state_dict keys are unchanged. Returns ``module``.
    """
    if settings.weight_std:
        convert_to_weight_std(module, settings.ws_eps)
    if settings.fused:
        convert_to_fused_group_norm(module)
    return module
