"""RetinaNet R50-FPN, GN in backbone, FPN and both subnets, 3x: the LazyConfig twin of
retinanet_R_50_FPN_3x_gn.yaml. Data and optimizer are Detectron2's retinanet_R_50_FPN_1x.py
(LR 0.01 at 16 images, no masks); schedule 3x (270k iterations, steps at 210k and 250k)."""
from detectron2 import model_zoo

from ..common.models.retinanet_gn import model

_d2 = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x.py")
dataloader = _d2.dataloader
optimizer = _d2.optimizer
train = _d2.train
lr_multiplier = model_zoo.get_config("common/coco_schedule.py").lr_multiplier_3x

train.max_iter = 270000
train.init_checkpoint = "catalog://ImageNetPretrained/FAIR/R-50-GN"
