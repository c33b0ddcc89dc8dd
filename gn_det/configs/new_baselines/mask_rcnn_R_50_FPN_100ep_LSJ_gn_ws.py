"""mask_rcnn_R_50_FPN_100ep_LSJ_gn.py with Weight Standardization of every conv that carries a
norm (GN+WS). From scratch, so WS does not meet weights pretrained without it."""
from .mask_rcnn_R_50_FPN_100ep_LSJ_gn import dataloader, lr_multiplier, model, optimizer, train

for _builder in (
    model.backbone.bottom_up,
    model.backbone,
    model.proposal_generator.head,
    model.roi_heads.box_head,
    model.roi_heads.mask_head,
):
    _builder.conv_settings = dict(weight_std=True)
