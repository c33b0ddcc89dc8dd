"""Every registered component builds with every norm choice, carries that norm, and trains."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from modeling_helpers import (
    MASK_RCNN_C4_YAML,
    MASK_RCNN_FPN_GN_YAML,
    NORM_CHOICES,
    RETINANET_YAML,
    assert_norm_choice,
    narrow,
    set_norm_everywhere,
    synthetic_batch,
    use_gn_det_names,
    zoo_cfg,
)
from torch import nn

import gn_det  # noqa: F401  (registers the names)


def _fpn_own_layers(fpn):
    return nn.ModuleList(fpn.lateral_convs + fpn.output_convs)


# Detectron2 config -> {component: function(model) -> the modules that component built}.
ARCHITECTURES = {
    "mask_rcnn_fpn": (
        MASK_RCNN_FPN_GN_YAML,
        {
            "BACKBONE": lambda m: m.backbone.bottom_up,
            "FPN": lambda m: _fpn_own_layers(m.backbone),
            "RPN_HEAD": lambda m: m.proposal_generator.rpn_head,
            "BOX_HEAD": lambda m: m.roi_heads.box_head,
            "MASK_HEAD": lambda m: m.roi_heads.mask_head,
        },
    ),
    # The C4 mask head of this config has no conv before its deconv, so no norm to check.
    "mask_rcnn_c4": (
        MASK_RCNN_C4_YAML,
        {
            "BACKBONE": lambda m: m.backbone,
            "RES5_ROI_HEAD": lambda m: m.roi_heads.res5,
            "RPN_HEAD": lambda m: m.proposal_generator.rpn_head,
        },
    ),
    "retinanet": (
        RETINANET_YAML,
        {
            "BACKBONE": lambda m: m.backbone.bottom_up,
            "FPN": lambda m: _fpn_own_layers(m.backbone),
            "RETINANET_HEAD": lambda m: m.head,
        },
    ),
}


def _build(arch, choice):
    yaml, _ = ARCHITECTURES[arch]
    cfg = set_norm_everywhere(narrow(use_gn_det_names(zoo_cfg(yaml))), choice)
    cfg.MODEL.BACKBONE.FREEZE_AT = 0  # so BN stays BN (frozen stages turn it into FrozenBN)
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 4, 1
    return build_model(cfg)


@pytest.mark.parametrize("choice", list(NORM_CHOICES))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_component_builds_with_norm_and_trains(arch, choice):
    model = _build(arch, choice)
    for component, get in ARCHITECTURES[arch][1].items():
        assert_norm_choice(get(model), choice, component)

    model.train()
    with EventStorage(0):
        losses = model(synthetic_batch())
    total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    without_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert without_grad == []
    norm_grads = [
        p.grad
        for n, p in model.named_parameters()
        if ".norm." in n and p.requires_grad and p.grad is not None
    ]
    # Gradients reach the norm's affine parameters (FrozenBN and "none" have none to train).
    if NORM_CHOICES[choice][0] not in ("", "FrozenBN"):
        assert norm_grads and any(g.abs().sum() > 0 for g in norm_grads)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_component_runs_in_eval_mode_with_gn(arch):
    model = _build(arch, "GN-groups").eval()
    with torch.no_grad():
        outputs = model([{"image": x["image"]} for x in synthetic_batch()])
    assert len(outputs) == 2 and all("instances" in o for o in outputs)
