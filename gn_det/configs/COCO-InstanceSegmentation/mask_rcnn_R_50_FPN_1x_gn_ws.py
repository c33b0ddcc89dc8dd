"""Mask R-CNN R50-FPN, GN+WS, 1x: mask_rcnn_R_50_FPN_1x_gn.py with Weight Standardization of every
conv that carries a norm; the LazyConfig twin of mask_rcnn_R_50_FPN_1x_gn_ws.yaml
(MODEL.GN.WEIGHT_STD: True). The backbone starts from the GN weights, trained without WS
(docs/configs.md, "GN+WS and channels per group")."""
from .mask_rcnn_R_50_FPN_1x_gn import dataloader, lr_multiplier, model, optimizer, train

for _builder in (
    model.backbone.bottom_up,
    model.backbone,
    model.proposal_generator.head,
    model.roi_heads.box_head,
    model.roi_heads.mask_head,
):
    _builder.conv_settings = dict(weight_std=True)
