"""mask_rcnn_R_50_FPN_200ep_LSJ_gn.py with a ResNet-101, as Detectron2's
new_baselines/mask_rcnn_R_101_FPN_200ep_LSJ.py."""
from .mask_rcnn_R_50_FPN_200ep_LSJ_gn import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.depth = 101
