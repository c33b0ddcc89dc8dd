"""The one place where a norm name and GN settings become a ``channels -> nn.Module`` callable.

Detectron2's ``get_norm(norm, channels)`` accepts a callable for ``norm``, and its ResNet, FPN and
heads pass ``norm`` through ``get_norm``; so a factory from here can be handed to any of them.
"""
from dataclasses import dataclass, replace
from typing import Callable, Optional, Union

import torch
from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm
from detectron2.layers import get_norm as d2_get_norm
from torch import nn

from .group_norm import GroupNorm, resolve_num_groups

__all__ = ["NORM_NAMES", "GNSettings", "NormFactory", "build_norm_factory"]

# "" means no normalization (Detectron2's convention: convs then keep their bias).
NORM_NAMES = ("BN", "SyncBN", "FrozenBN", "GN", "LN", "IN", "")


@dataclass(frozen=True)
class GNSettings:
    """How GN layers are built (paper defaults: 32 groups, eps 1e-5).

    ``channels_per_group`` > 0 replaces ``num_groups`` (the paper's fixed-channels ablation).
    ``weight_std`` asks the component to standardize the weights of its normed convs (GN+WS).
    ``fused`` runs each GN and its ReLU (or no activation) as one op that keeps only GN's input
    and statistics for backward (``gn_det.layers.group_norm_act``); ``False`` is the plain
    ``nn.GroupNorm`` reference path.
    """

    num_groups: int = 32
    channels_per_group: int = 0
    eps: float = 1e-5
    weight_std: bool = False
    ws_eps: float = 1e-5
    fused: bool = True

    def with_overrides(self, **overrides) -> "GNSettings":
        """A copy with the non-None overrides applied (per-component config keys)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


class NormFactory:
    """A ``channels -> nn.Module`` callable that also says what it builds (name, settings)."""

    def __init__(self, name: str, settings: GNSettings, component: str, build: Callable[[int], nn.Module]):
        self.name = name
        self.settings = settings
        self.component = component
        self._build = build

    def __call__(self, channels: int) -> nn.Module:
        return self._build(channels)

    def check_channels(self, channels: int) -> None:
        """Raise the build-time ValueError now if ``channels`` cannot be grouped."""
        if self.name == "GN":
            resolve_num_groups(
                channels, self.settings.num_groups, self.settings.channels_per_group, self.component
            )

    def __repr__(self):
        return f"NormFactory({self.name!r}, component={self.component!r}, {self.settings})"


def _sync_bn(channels: int) -> nn.Module:
    # nn.SyncBatchNorm runs only on GPUs; Detectron2's NaiveSyncBatchNorm also syncs over Gloo
    # (multi-process CPU) and is plain BN in a single process. Both have BN's state_dict keys.
    if torch.cuda.is_available():
        return d2_get_norm("SyncBN", channels)
    return NaiveSyncBatchNorm(channels)


def build_norm_factory(
    norm: str, settings: Optional[GNSettings] = None, component: str = ""
) -> Union[str, NormFactory]:
    """Map a norm name to what Detectron2's modules take as ``norm``.

    Args:
        norm: one of ``NORM_NAMES``. ``LN`` is GN with one group (LayerNorm over C, H, W) and ``IN``
            GN with one channel per group (InstanceNorm); both take ``settings.eps``.
        settings: GN settings (defaults: the paper's).
        component: where the norm is used (e.g. "MODEL.FPN.NORM"), for error messages.

    Returns:
        ``""`` for no norm (so Detectron2 modules keep their conv biases), else a ``NormFactory``.
    """
    settings = settings or GNSettings()
    where = f" for {component}" if component else ""
    if not isinstance(norm, str) or norm not in NORM_NAMES:
        raise ValueError(
            f"Unknown norm {norm!r}{where}; valid names: {', '.join(repr(n) for n in NORM_NAMES)}."
        )
    if norm == "":
        return ""
    builders = {
        "BN": lambda c: d2_get_norm("BN", c),
        "SyncBN": _sync_bn,
        "FrozenBN": FrozenBatchNorm2d,
        "GN": lambda c: GroupNorm(
            c, settings.num_groups, settings.channels_per_group, settings.eps, component=component
        ),
        "LN": lambda c: GroupNorm(c, num_groups=1, eps=settings.eps, component=component),
        "IN": lambda c: GroupNorm(c, channels_per_group=1, eps=settings.eps, component=component),
    }
    return NormFactory(norm, settings, component, builders[norm])
