"""gn_det's backbones and heads, registered in Detectron2's registries on import.

| registry | name |
|---|---|
| BACKBONE_REGISTRY | build_gn_resnet_backbone, build_gn_resnet_fpn_backbone, build_gn_retinanet_resnet_fpn_backbone |
| RPN_HEAD_REGISTRY | GNRPNHead |
| ROI_BOX_HEAD_REGISTRY | GNConvFCHead |
| ROI_MASK_HEAD_REGISTRY | GNMaskRCNNConvUpsampleHead |
| ROI_HEADS_REGISTRY | GNRes5ROIHeads |
| META_ARCH_REGISTRY | GNRetinaNet |

Every component reads its norm through ``gn_det.config.component_norm`` and passes what it built
through ``gn_det.layers.apply_conv_settings`` once.
"""
from .box_head import GNConvFCHead
from .fpn import build_gn_fpn, build_gn_resnet_fpn_backbone, build_gn_retinanet_resnet_fpn_backbone
from .mask_head import GNMaskRCNNConvUpsampleHead
from .resnet import (
    GNBasicBlock,
    GNBasicStem,
    GNBottleneckBlock,
    build_gn_resnet,
    build_gn_resnet_backbone,
)
from .retinanet import ConvNormActSequential, GNRetinaNet, GNRetinaNetHead
from .roi_heads import GNRes5ROIHeads
from .rpn_head import GNRPNHead

__all__ = [
    "GNBasicStem",
    "GNBasicBlock",
    "GNBottleneckBlock",
    "build_gn_resnet",
    "build_gn_resnet_backbone",
    "build_gn_fpn",
    "build_gn_resnet_fpn_backbone",
    "build_gn_retinanet_resnet_fpn_backbone",
    "GNRPNHead",
    "GNConvFCHead",
    "GNMaskRCNNConvUpsampleHead",
    "GNRes5ROIHeads",
    "ConvNormActSequential",
    "GNRetinaNetHead",
    "GNRetinaNet",
]
