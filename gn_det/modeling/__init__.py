"""gn_det's backbones and heads, registered in Detectron2's registries on import.

| registry | name |
|---|---|
| BACKBONE_REGISTRY | build_gn_resnet_backbone, build_gn_resnet_fpn_backbone, build_gn_retinanet_resnet_fpn_backbone |
| RPN_HEAD_REGISTRY | GNRPNHead |
| ROI_BOX_HEAD_REGISTRY | GNConvFCHead |
| ROI_MASK_HEAD_REGISTRY | GNMaskRCNNConvUpsampleHead |
| ROI_HEADS_REGISTRY | GNRes5ROIHeads |
| META_ARCH_REGISTRY | GNRetinaNet |

Builders with plain arguments, for LazyConfig files and Python code: ``make_gn_resnet``,
``make_gn_fpn``, ``make_gn_res5_stage`` and the head classes' constructors. Each resolves its
``norm``/``conv_settings`` with ``resolve_norm`` (names such as ``"GN"``, a dict of GN settings,
or Detectron2's callables) and passes what it built through ``gn_det.layers.apply_conv_settings``
once. The registered YAML builders only read the config (``gn_det.config.component_norm``) into
those arguments and call the same builders: one code path for both config systems.
"""
from .box_head import GNConvFCHead
from .fpn import (
    build_gn_fpn,
    build_gn_resnet_fpn_backbone,
    build_gn_retinanet_resnet_fpn_backbone,
    make_gn_fpn,
)
from .mask_head import GNMaskRCNNConvUpsampleHead
from .norm_args import resolve_norm
from .resnet import (
    GNBasicBlock,
    GNBasicStem,
    GNBottleneckBlock,
    build_gn_resnet,
    build_gn_resnet_backbone,
    make_gn_resnet,
)
from .retinanet import ConvNormActSequential, GNRetinaNet, GNRetinaNetHead
from .roi_heads import GNRes5ROIHeads, make_gn_res5_stage
from .rpn_head import GNRPNHead

__all__ = [
    "resolve_norm",
    "make_gn_resnet",
    "make_gn_fpn",
    "make_gn_res5_stage",
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
