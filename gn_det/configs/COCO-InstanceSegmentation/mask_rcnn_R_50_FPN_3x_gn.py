"""Mask R-CNN R50-FPN, GN everywhere, 3x (270k iterations, steps at 210k and 250k): the LazyConfig
twin of mask_rcnn_R_50_FPN_3x_gn.yaml, which is Detectron2's Misc/mask_rcnn_R_50_FPN_3x_gn.yaml
(box AP 42.6, mask AP 38.6 in Detectron2's model zoo)."""
from detectron2 import model_zoo

from .mask_rcnn_R_50_FPN_1x_gn import dataloader, model, optimizer, train

lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_3x
train.max_iter = 270000
