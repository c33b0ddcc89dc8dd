"""Mask R-CNN R50-FPN, GN everywhere, 1x: the LazyConfig twin of mask_rcnn_R_50_FPN_1x_gn.yaml
(same model; data, optimizer and schedule are Detectron2's mask_rcnn_R_50_FPN_1x.py: COCO 2017,
16 images per iteration, LR 0.02, 90k iterations, steps at 60k and 80k), from the ImageNet R-50
trained with GN.

    python3 tools/train_net.py --num-gpus 8 --config-file configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_gn.py

Detectron2's lazy trainer does not rescale the solver to another GPU count as DefaultTrainer
does for the YAML configs: change dataloader.train.total_batch_size, optimizer.lr and
train.max_iter together (docs/configs.md, "Per-GPU batch").
"""
from detectron2 import model_zoo

from ..common.models.mask_rcnn_fpn_gn import model

_d2 = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader = _d2.dataloader
optimizer = _d2.optimizer
lr_multiplier = _d2.lr_multiplier
train = _d2.train

train.init_checkpoint = "catalog://ImageNetPretrained/FAIR/R-50-GN"
