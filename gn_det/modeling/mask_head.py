"""Mask R-CNN's mask head on Detectron2's ``MaskRCNNConvUpsampleHead`` with gn_det's norm."""
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead

from ..config import component_norm
from ..layers import apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm

__all__ = ["GNMaskRCNNConvUpsampleHead"]


@ROI_MASK_HEAD_REGISTRY.register()
class GNMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    """``NUM_CONV`` 3x3 convs (conv -> norm -> ReLU, no bias when normed), a 2x deconv + ReLU and
    a 1x1 predictor, with ``MODEL.ROI_MASK_HEAD.NORM`` and ``MODEL.GN.MASK_HEAD``.

    ``conv_norm``/``conv_settings`` as ``resolve_norm`` takes them. The deconv and the predictor
    are never normalized. State_dict keys are Detectron2's.
    Input (R, C, P, P); output mask logits (R, num_classes, 2P, 2P) inside ``layers``.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes,
        conv_dims,
        conv_norm: NormArg = "",
        conv_settings: SettingsArg = None,
        **kwargs,
    ):
        norm, settings = resolve_norm(conv_norm, conv_settings, "GNMaskRCNNConvUpsampleHead.conv_norm")
        super().__init__(
            input_shape, num_classes=num_classes, conv_dims=list(conv_dims), conv_norm=norm, **kwargs
        )
        apply_conv_settings(self, settings)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["conv_norm"], ret["conv_settings"] = component_norm(cfg, "MASK_HEAD")
        return ret
