"""Mask R-CNN R50-C4 with GN, 1x: the LazyConfig twin of mask_rcnn_R_50_C4_1x_gn.yaml (data,
optimizer and schedule: Detectron2's mask_rcnn_R_50_C4_1x.py)."""
from detectron2 import model_zoo

from ..common.models.mask_rcnn_c4_gn import model

_d2 = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_C4_1x.py")
dataloader = _d2.dataloader
optimizer = _d2.optimizer
lr_multiplier = _d2.lr_multiplier
train = _d2.train

train.init_checkpoint = "catalog://ImageNetPretrained/FAIR/R-50-GN"
