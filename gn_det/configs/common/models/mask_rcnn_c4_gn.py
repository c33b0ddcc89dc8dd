"""Mask R-CNN R50-C4 with GN: the twin of Base-GN-RCNN-C4.yaml with MASK_ON.

Detectron2's common/models/mask_rcnn_c4.py with gn_det's builders: a GN ResNet up to res4 as the
backbone, and res5 run per region (``make_gn_res5_stage``) with the backbone's norm, as
``GNRes5ROIHeads`` builds it from YAML. The RPN head has no norm.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from gn_det.modeling import GNMaskRCNNConvUpsampleHead, GNRes5ROIHeads, GNRPNHead, make_gn_res5_stage, make_gn_resnet

model = model_zoo.get_config("common/models/mask_rcnn_c4.py").model

model.backbone = L(make_gn_resnet)(
    depth=50,
    norm="GN",
    conv_settings=None,
    stride_in_1x1=False,
    out_features=["res4"],
    freeze_at=2,
)
model.proposal_generator.head = L(GNRPNHead)(
    in_channels=1024, num_anchors=15, conv_norm="", conv_settings=None
)
model.roi_heads._target_ = GNRes5ROIHeads
model.roi_heads.res5 = L(make_gn_res5_stage)(norm="GN", conv_settings=None, stride_in_1x1=False)
model.roi_heads.box_predictor.input_shape = L(ShapeSpec)(channels=2048, height=1, width=1)
model.roi_heads.mask_head = L(GNMaskRCNNConvUpsampleHead)(
    input_shape=L(ShapeSpec)(channels=2048, width=14, height=14),
    num_classes="${..num_classes}",
    conv_dims=[256],  # no conv before the deconv (Detectron2's C4 mask head)
    conv_norm="GN",
    conv_settings=None,
)
