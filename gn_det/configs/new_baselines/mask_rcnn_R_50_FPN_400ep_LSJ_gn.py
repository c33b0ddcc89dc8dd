"""mask_rcnn_R_50_FPN_100ep_LSJ_gn.py trained for 400 epochs: data, optimizer and schedule are
Detectron2's new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ.py."""
from detectron2 import model_zoo

from .mask_rcnn_R_50_FPN_100ep_LSJ_gn import model

_d2 = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_400ep_LSJ.py")
dataloader = _d2.dataloader
lr_multiplier = _d2.lr_multiplier
optimizer = _d2.optimizer
train = _d2.train
