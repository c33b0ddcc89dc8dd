"""Mask R-CNN R50-FPN with GN everywhere (Wu & He 2018), as a LazyConfig model: the twin of
Base-GN-RCNN-FPN.yaml with MASK_ON (same modules, same state_dict keys and shapes).

Detectron2's own common/models/mask_rcnn_fpn.py with gn_det's builders in place of its backbone,
RPN head, box head and mask head: GN in the backbone (stride in the 3x3 conv, as the R-50-GN
weights expect), in FPN, in the paper's 4conv1fc box head and in the mask head; no norm in the
RPN head. Every gn_det builder takes ``norm`` (a name: "GN", "BN", "SyncBN", "FrozenBN", "LN",
"IN", "") and ``conv_settings`` (a dict of gn_det.layers.GNSettings fields, e.g.
``dict(num_groups=16)`` or ``dict(weight_std=True)``; None is the paper's GN: 32 groups, eps 1e-5,
fused GN+ReLU, no WS), applied the same way as the YAML configs' MODEL.GN.* keys.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from gn_det.modeling import GNConvFCHead, GNMaskRCNNConvUpsampleHead, GNRPNHead, make_gn_fpn, make_gn_resnet

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model

model.backbone = L(make_gn_fpn)(
    bottom_up=L(make_gn_resnet)(
        depth=50,
        norm="GN",
        conv_settings=None,
        stride_in_1x1=False,
        out_features=["res2", "res3", "res4", "res5"],
        freeze_at=2,
    ),
    in_features="${.bottom_up.out_features}",
    out_channels=256,
    norm="GN",
    conv_settings=None,
    top_block=L(LastLevelMaxPool)(),
)
model.proposal_generator.head = L(GNRPNHead)(
    in_channels=256, num_anchors=3, conv_norm="", conv_settings=None
)
model.roi_heads.box_head = L(GNConvFCHead)(
    input_shape=L(ShapeSpec)(channels=256, height=7, width=7),
    conv_dims=[256, 256, 256, 256],
    fc_dims=[1024],
    conv_norm="GN",
    conv_settings=None,
)
# A LazyCall, not a ShapeSpec object, so LazyConfig.save writes plain YAML.
model.roi_heads.box_predictor.input_shape = L(ShapeSpec)(channels=1024)
model.roi_heads.mask_head = L(GNMaskRCNNConvUpsampleHead)(
    input_shape=L(ShapeSpec)(channels=256, width=14, height=14),
    num_classes="${..num_classes}",
    conv_dims=[256, 256, 256, 256, 256],  # 4 convs, then the deconv's width
    conv_norm="GN",
    conv_settings=None,
)
