"""RPN head whose shared 3x3 conv(s) can carry a norm (Detectron2's ``StandardRPNHead`` has none)."""
from typing import List, Sequence

from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.modeling.proposal_generator import RPN_HEAD_REGISTRY
from detectron2.modeling.proposal_generator.rpn import StandardRPNHead

from ..config import component_norm
from ..layers import apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm

__all__ = ["GNRPNHead"]


@RPN_HEAD_REGISTRY.register()
class GNRPNHead(StandardRPNHead):
    """``StandardRPNHead`` with ``MODEL.RPN.NORM`` on its shared conv(s): conv -> norm -> ReLU.

    With ``conv_norm=""`` it is exactly Detectron2's head (same keys, same init). With a norm the
    shared convs have no bias (the norm's beta replaces it), so keys gain ``conv.norm.*`` and lose
    ``conv.bias``. The objectness and delta predictors are never normalized.

    ``conv_norm``/``conv_settings`` as ``resolve_norm`` takes them: a name (``"GN"``), a
    ``NormFactory`` or a callable, and ``GNSettings`` or a dict of its fields.

    Input: list of L feature maps (N, C, Hi, Wi); output: see ``StandardRPNHead.forward``.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        box_dim: int = 4,
        conv_dims: Sequence[int] = (-1,),
        conv_norm: NormArg = "",
        conv_settings: SettingsArg = None,
    ):
        norm, settings = resolve_norm(conv_norm, conv_settings, "GNRPNHead.conv_norm")
        super().__init__(
            in_channels=in_channels, num_anchors=num_anchors, box_dim=box_dim, conv_dims=list(conv_dims)
        )
        if norm:
            # The parent initializes every conv's bias, so the norm is added after it has run.
            for conv in self._shared_convs():
                conv.norm = norm(conv.out_channels)
                conv.bias = None
        apply_conv_settings(self, settings)

    def _shared_convs(self) -> List[Conv2d]:
        return [m for m in self.conv.modules() if isinstance(m, Conv2d)]

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["conv_norm"], ret["conv_settings"] = component_norm(cfg, "RPN_HEAD")
        return ret
