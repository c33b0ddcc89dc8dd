"""The NconvMfc box head (Wu & He 2018: 4conv1fc with GN) on Detectron2's ``FastRCNNConvFCHead``."""
import logging
from typing import Sequence

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY, FastRCNNConvFCHead

from ..config import component_norm
from ..layers import apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm

__all__ = ["GNConvFCHead"]

logger = logging.getLogger(__name__)


@ROI_BOX_HEAD_REGISTRY.register()
class GNConvFCHead(FastRCNNConvFCHead):
    """N 3x3 convs (each conv -> norm -> ReLU, no bias when normed), then M fc + ReLU.

    Defaults to the paper's 4conv1fc (4 x 256-channel convs, one 1024-d fc). Config:
    ``MODEL.ROI_BOX_HEAD.{NUM_CONV, CONV_DIM, NUM_FC, FC_DIM, NORM}`` and ``MODEL.GN.BOX_HEAD``;
    ``NUM_CONV = NUM_FC = 0`` (Detectron2's defaults, an empty head it rejects) means 4conv1fc.
    State_dict keys are ``FastRCNNConvFCHead``'s (``conv{k}.weight``, ``conv{k}.norm.*``,
    ``fc{k}.*``), so Detectron2's 4conv1fc GN checkpoints load unchanged.

    ``conv_norm``/``conv_settings`` as ``resolve_norm`` takes them (e.g. ``"GN"`` and
    ``dict(weight_std=True)``).

    Input (R, C, P, P) pooled region features; output (R, FC_DIM), or (R, C', P, P) with no fc.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        conv_dims: Sequence[int] = (256,) * 4,
        fc_dims: Sequence[int] = (1024,),
        conv_norm: NormArg = "",
        conv_settings: SettingsArg = None,
    ):
        norm, settings = resolve_norm(conv_norm, conv_settings, "GNConvFCHead.conv_norm")
        super().__init__(input_shape, conv_dims=list(conv_dims), fc_dims=list(fc_dims), conv_norm=norm)
        apply_conv_settings(self, settings)

    @classmethod
    def from_config(cls, cfg, input_shape):
        box = cfg.MODEL.ROI_BOX_HEAD
        num_conv, num_fc = box.NUM_CONV, box.NUM_FC
        if num_conv == 0 and num_fc == 0:
            logger.info("GNConvFCHead: ROI_BOX_HEAD.NUM_CONV = NUM_FC = 0, using 4conv1fc.")
            num_conv, num_fc = 4, 1
        conv_norm, conv_settings = component_norm(cfg, "BOX_HEAD")
        return {
            "input_shape": input_shape,
            "conv_dims": [box.CONV_DIM] * num_conv,
            "fc_dims": [box.FC_DIM] * num_fc,
            "conv_norm": conv_norm,
            "conv_settings": conv_settings,
        }
