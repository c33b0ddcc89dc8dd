"""Normalization layers: GroupNorm, Weight Standardization, the norm factory, and the fused
GroupNorm+ReLU path with its memory-saving recompute scopes."""
from .conv_settings import apply_conv_settings, convert_to_fused_group_norm, convert_to_weight_std
from .fused_conv import FusedGNActConv2d, WSFusedGNActConv2d
from .group_norm_act import GroupNormActFunction, cpu_kernels_available, group_norm_act
from .recompute import install_recompute_scope, recompute_scope
from .group_norm import GroupNorm, resolve_num_groups
from .norm_factory import NORM_NAMES, GNSettings, NormFactory, build_norm_factory
from .weight_std import WSConv2d, standardize_weight

__all__ = [
    "apply_conv_settings",
    "FusedGNActConv2d",
    "WSFusedGNActConv2d",
    "convert_to_fused_group_norm",
    "GroupNormActFunction",
    "cpu_kernels_available",
    "group_norm_act",
    "install_recompute_scope",
    "recompute_scope",
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
