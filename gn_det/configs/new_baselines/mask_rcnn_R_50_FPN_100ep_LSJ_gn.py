"""Detectron2's new baseline mask_rcnn_R_50_FPN_100ep_LSJ.py with GN instead of SyncBN: the same
from-scratch training with large-scale jitter at 1024 px, 64 images per iteration, LR 0.1,
184,375 iterations (100 COCO epochs), AMP; the same model layout (2-conv RPN head, 4conv1fc box
head, every stage trained), with GN (32 groups) in the backbone, FPN, box and mask heads.

Detectron2's file uses a lambda for its heads' NaiveSyncBatchNorm, so LazyConfig.save can only
pickle it; this one saves as plain YAML. The ResNet's stride is in the 3x3 conv (gn_det's GN
configs; Detectron2's file keeps it in the 1x1), which changes no parameter shape.
"""
from detectron2 import model_zoo

from ..common.models.mask_rcnn_fpn_gn import model

_d2 = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
dataloader = _d2.dataloader
lr_multiplier = _d2.lr_multiplier
optimizer = _d2.optimizer
train = _d2.train

model.backbone.bottom_up.freeze_at = 0  # from scratch
model.proposal_generator.head.conv_dims = [-1, -1]  # 2 convs in the RPN head, as Detectron2's
