"""Cascade Mask R-CNN R50-FPN with GN everywhere: three GN 4conv1fc box stages with
class-agnostic boxes (IoU 0.5, 0.6, 0.7), as Detectron2's common/models/cascade_rcnn.py lays out
the cascade, on mask_rcnn_fpn_gn.py. Model of the twin of
COCO-InstanceSegmentation/cascade_mask_rcnn_R_50_FPN_3x_gn.yaml.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import CascadeROIHeads, FastRCNNOutputLayers

from gn_det.modeling import GNConvFCHead

from .mask_rcnn_fpn_gn import model

# Arguments that Cascade R-CNN takes per stage instead.
for _key in ("box_head", "box_predictor", "proposal_matcher"):
    model.roi_heads.pop(_key)

model.roi_heads.update(
    _target_=CascadeROIHeads,
    box_heads=[
        L(GNConvFCHead)(
            input_shape=L(ShapeSpec)(channels=256, height=7, width=7),
            conv_dims=[256, 256, 256, 256],
            fc_dims=[1024],
            conv_norm="GN",
            conv_settings=None,
        )
        for _ in range(3)
    ],
    box_predictors=[
        L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=1024),
            test_score_thresh=0.05,
            box2box_transform=L(Box2BoxTransform)(weights=(w1, w1, w2, w2)),
            cls_agnostic_bbox_reg=True,
            num_classes="${...num_classes}",
        )
        for (w1, w2) in [(10, 5), (20, 10), (30, 15)]
    ],
    proposal_matchers=[
        L(Matcher)(thresholds=[th], labels=[0, 1], allow_low_quality_matches=False)
        for th in [0.5, 0.6, 0.7]
    ],
)
# Detectron2's cascade configs keep 2000 proposals per image in training.
model.proposal_generator.post_nms_topk = (2000, 1000)
