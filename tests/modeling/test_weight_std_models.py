"""GN+WS in gn_det's components: WS is really applied, per component, with ordinary keys."""
import torch
from detectron2.layers import Conv2d
from detectron2.modeling import build_model
from modeling_helpers import (
    MASK_RCNN_FPN_GN_YAML,
    narrow,
    normed_convs,
    synthetic_batch,
    use_gn_det_names,
    zoo_cfg,
)

import gn_det  # noqa: F401  (registers the names)
from gn_det.layers import WSConv2d


def _model(weight_std=False, **per_component):
    cfg = narrow(use_gn_det_names(zoo_cfg(MASK_RCNN_FPN_GN_YAML)))
    cfg.MODEL.RPN.NORM = "GN"
    cfg.MODEL.GN.WEIGHT_STD = weight_std
    for component, value in per_component.items():
        cfg.MODEL.GN[component].WEIGHT_STD = value
    torch.manual_seed(0)
    return build_model(cfg)


def _eval_detections(model):
    model.eval()
    with torch.no_grad():
        return model.inference([{"image": x["image"]} for x in synthetic_batch()], do_postprocess=False)


def test_weight_std_keeps_checkpoint_keys_and_loads_both_ways():
    plain, ws = _model(), _model(weight_std=True)
    assert list(ws.state_dict()) == list(plain.state_dict())
    assert not any("ws" in key.lower() for key in ws.state_dict())
    ws.load_state_dict(plain.state_dict(), strict=True)
    plain.load_state_dict(ws.state_dict(), strict=True)


def test_weight_std_changes_outputs_with_the_same_weights():
    plain, ws = _model(), _model(weight_std=True)
    ws.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        plain_features, ws_features = plain.backbone(x), ws.backbone(x)
    for name in plain_features:
        assert (plain_features[name] - ws_features[name]).abs().max() > 1e-3, name
    plain_boxes = _eval_detections(plain)[0].pred_boxes.tensor
    ws_boxes = _eval_detections(ws)[0].pred_boxes.tensor
    assert plain_boxes.shape != ws_boxes.shape or not torch.allclose(plain_boxes, ws_boxes)


def test_weight_std_converts_exactly_the_normed_convs_of_every_component():
    model = _model(weight_std=True)
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    normed = normed_convs(model)
    assert normed and all(isinstance(m, WSConv2d) for m in normed)
    # Predictors (RPN logits/deltas, mask predictor) have no norm and keep plain weights.
    assert all(not isinstance(m, WSConv2d) for m in convs if m.norm is None)
    assert isinstance(model.proposal_generator.rpn_head.conv, WSConv2d)


def test_weight_std_per_component_reaches_only_that_component():
    model = _model(FPN=True)
    fpn = model.backbone
    assert all(isinstance(c, WSConv2d) for c in fpn.lateral_convs + fpn.output_convs)
    assert not any(isinstance(m, WSConv2d) for m in fpn.bottom_up.modules())
    assert not any(isinstance(m, WSConv2d) for m in model.roi_heads.modules())

    model = _model(BACKBONE=True)
    assert all(isinstance(m, WSConv2d) for m in normed_convs(model.backbone.bottom_up))
    assert not any(isinstance(c, WSConv2d) for c in model.backbone.lateral_convs)
