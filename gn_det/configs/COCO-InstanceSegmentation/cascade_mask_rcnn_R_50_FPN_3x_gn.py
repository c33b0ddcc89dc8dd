"""Cascade Mask R-CNN R50-FPN, GN everywhere, 3x: the LazyConfig twin of
cascade_mask_rcnn_R_50_FPN_3x_gn.yaml (data, optimizer, schedule: mask_rcnn_R_50_FPN_3x_gn.py)."""
from ..common.models.cascade_rcnn_gn import model
from .mask_rcnn_R_50_FPN_3x_gn import dataloader, lr_multiplier, optimizer, train
