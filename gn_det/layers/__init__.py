"""Normalization layers: GroupNorm, Weight Standardization and the norm factory."""
from .conv_settings import apply_conv_settings
from .group_norm import GroupNorm, resolve_num_groups
from .norm_factory import NORM_NAMES, GNSettings, NormFactory, build_norm_factory
from .weight_std import WSConv2d, convert_to_weight_std, standardize_weight

__all__ = [
    "apply_conv_settings",
    "GroupNorm",
    "resolve_num_groups",
    "NORM_NAMES",
    "GNSettings",
    "NormFactory",
    "build_norm_factory",
    "WSConv2d",
    "convert_to_weight_std",
    "standardize_weight",
]
