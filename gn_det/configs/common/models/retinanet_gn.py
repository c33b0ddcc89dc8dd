"""RetinaNet R50-FPN (P3-P7) with GN in the backbone, FPN and both subnets: the twin of
Base-GN-RetinaNet.yaml.

Detectron2's common/models/retinanet.py with gn_det's backbone and head (``GNRetinaNetHead``).
The meta-architecture is ``GNRetinaNet``, as in the YAML: Detectron2's ``RetinaNet`` with the same
constructor (it differs only in how it reads a YAML config).
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from gn_det.modeling import GNRetinaNet, GNRetinaNetHead, make_gn_fpn, make_gn_resnet

model = model_zoo.get_config("common/models/retinanet.py").model
model._target_ = GNRetinaNet

model.backbone = L(make_gn_fpn)(
    bottom_up=L(make_gn_resnet)(
        depth=50,
        norm="GN",
        conv_settings=None,
        stride_in_1x1=False,
        out_features=["res3", "res4", "res5"],
        freeze_at=2,
    ),
    in_features="${.bottom_up.out_features}",
    out_channels=256,
    norm="GN",
    conv_settings=None,
    top_block=L(LastLevelP6P7)(in_channels=2048, out_channels="${..out_channels}"),
)
model.head = L(GNRetinaNetHead)(
    input_shape=[L(ShapeSpec)(channels=256) for _ in range(5)],
    num_classes="${..num_classes}",
    conv_dims=[256, 256, 256, 256],
    prior_prob=0.01,
    num_anchors=9,
    norm="GN",
    conv_settings=None,
)
model.smooth_l1_beta = 0.0  # as Detectron2's Base-RetinaNet.yaml (and gn_det's)
