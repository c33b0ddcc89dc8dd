"""Group Normalization configured by number of groups or by channels per group."""
from typing import Optional

from torch import nn

__all__ = ["GroupNorm", "resolve_num_groups"]


def resolve_num_groups(
    num_channels: int,
    num_groups: Optional[int] = None,
    channels_per_group: Optional[int] = None,
    component: str = "",
) -> int:
    """The group count for ``num_channels`` channels.

    Exactly one of ``num_groups`` (the paper's fixed-G setting) and ``channels_per_group``
    (its fixed-channels-per-group ablation) is used; a positive ``channels_per_group`` wins.
    Raises ValueError naming the component, the channels and the groups when they do not divide,
    so a bad setting fails when the model is built, not at the first forward.
    """
    where = f" in {component}" if component else ""
    if channels_per_group is not None and channels_per_group > 0:
        if num_channels % channels_per_group != 0:
            raise ValueError(
                f"GroupNorm{where}: channels_per_group={channels_per_group} does not divide "
                f"num_channels={num_channels}; use a divisor of {num_channels}."
            )
        return num_channels // channels_per_group
    if num_groups is None or num_groups <= 0:
        raise ValueError(
            f"GroupNorm{where}: need num_groups > 0 or channels_per_group > 0, got "
            f"num_groups={num_groups}, channels_per_group={channels_per_group}."
        )
    if num_channels % num_groups != 0:
        raise ValueError(
            f"GroupNorm{where}: num_groups={num_groups} does not divide num_channels={num_channels}; "
            f"use a divisor of {num_channels} or set channels_per_group."
        )
    return num_groups


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` whose group count may be given as channels per group.

    It subclasses torch's module so parameters (``weight``, ``bias``) and numerics are torch's:
    a Detectron2 ``norm: "GN"`` checkpoint loads unchanged. G=1 is LayerNorm over (C, H, W),
    G=C is InstanceNorm (each with a per-channel affine).

    Input/output: (N, C, *) tensors; statistics are per sample and group, never over the batch.
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: Optional[int] = 32,
        channels_per_group: Optional[int] = None,
        eps: float = 1e-5,
        affine: bool = True,
        component: str = "",
    ):
        groups = resolve_num_groups(num_channels, num_groups, channels_per_group, component)
        super().__init__(groups, num_channels, eps=eps, affine=affine)
        self.component = component

    @property
    def channels_per_group(self) -> int:
        return self.num_channels // self.num_groups
