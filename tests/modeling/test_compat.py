"""gn_det's registered names build models that are Detectron2's GN models, key for key and
number for number, checked against Detectron2 itself (not against stored numbers)."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from modeling_helpers import (
    MASK_RCNN_C4_YAML,
    MASK_RCNN_FPN_GN_YAML,
    RETINANET_YAML,
    narrow,
    pin_fused_backend,
    synthetic_batch,
    use_gn_det_names,
    zoo_cfg,
)

import gn_det  # noqa: F401  (registers the names)


def _gn_everywhere_except_rpn(cfg):
    # Detectron2's RPN head has no norm; gn_det's MODEL.RPN.NORM stays "" for the comparison.
    for key in ("RESNETS", "FPN", "ROI_BOX_HEAD", "ROI_MASK_HEAD", "RETINANET"):
        cfg.MODEL[key].NORM = "GN"
    cfg.MODEL.ROI_BOX_HEAD.NUM_CONV, cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 4, 1
    return cfg


def _model_pair(yaml, make_small):
    """(Detectron2's model, gn_det's model) from the same config, GN 32 groups, eps 1e-5, no WS."""
    d2_cfg = zoo_cfg(yaml)
    # Random weights give low scores: keep every detection so outputs are never empty.
    d2_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = d2_cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    if make_small:
        narrow(_gn_everywhere_except_rpn(d2_cfg))
    gn_cfg = use_gn_det_names(d2_cfg.clone())
    assert gn_cfg.MODEL.GN.NUM_GROUPS == 32 and gn_cfg.MODEL.GN.EPS == 1e-5
    assert not gn_cfg.MODEL.GN.WEIGHT_STD
    # Same kernels as Detectron2's GN, so the comparison is number for number (architecture).
    return build_model(d2_cfg), pin_fused_backend(build_model(gn_cfg))


def _perturb(model, seed):
    """Random values everywhere, so GN gammas/betas and biases are not at their init (1, 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.1 * torch.randn(value.shape, generator=generator))
    return model


def _eval_outputs(model, batch):
    """Eval-mode detections of ``model``: for R-CNN before resizing and mask pasting (so masks
    are the predicted probabilities; the rest of post-processing is a fixed function of them)."""
    model.eval()
    inputs = [{"image": x["image"]} for x in batch]
    with torch.no_grad():
        if hasattr(model, "roi_heads"):
            return model.inference(inputs, do_postprocess=False)
        return [out["instances"] for out in model(inputs)]


def _assert_same_detections(a, b, atol=1e-5):
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=atol, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=atol, rtol=0)
    assert torch.equal(a.pred_classes, b.pred_classes)
    if a.has("pred_masks"):
        torch.testing.assert_close(a.pred_masks, b.pred_masks, atol=atol, rtol=0)


def _assert_same_eval_outputs(source, target, batch):
    for s, t in zip(_eval_outputs(source, batch), _eval_outputs(target, batch)):
        _assert_same_detections(s, t)


@pytest.fixture(scope="module")
def mask_rcnn_fpn_pair():
    """The real-size R50-FPN GN Mask R-CNN of Detectron2's Misc/mask_rcnn_R_50_FPN_3x_gn.yaml."""
    torch.manual_seed(0)
    return _model_pair(MASK_RCNN_FPN_GN_YAML, make_small=False)


def test_fpn_mask_rcnn_uses_gn_det_components(mask_rcnn_fpn_pair):
    _, ours = mask_rcnn_fpn_pair
    assert type(ours.backbone.bottom_up.res2[0]).__name__ == "GNBottleneckBlock"
    assert type(ours.proposal_generator.rpn_head).__name__ == "GNRPNHead"
    assert type(ours.roi_heads.box_head).__name__ == "GNConvFCHead"
    assert type(ours.roi_heads.mask_head).__name__ == "GNMaskRCNNConvUpsampleHead"


def test_fpn_mask_rcnn_state_dict_keys_and_shapes_equal_detectron2(mask_rcnn_fpn_pair):
    d2, ours = mask_rcnn_fpn_pair
    d2_shapes = {k: tuple(v.shape) for k, v in d2.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert list(our_shapes) == list(d2_shapes)
    assert our_shapes == d2_shapes


def test_detectron2_weights_load_strictly_into_gn_det_and_give_same_outputs(mask_rcnn_fpn_pair):
    d2, ours = mask_rcnn_fpn_pair
    _perturb(d2, seed=1)
    ours.load_state_dict(d2.state_dict(), strict=True)
    _assert_same_eval_outputs(d2, ours, synthetic_batch())


def test_gn_det_weights_load_strictly_into_detectron2_and_give_same_outputs(mask_rcnn_fpn_pair):
    d2, ours = mask_rcnn_fpn_pair
    _perturb(ours, seed=2)
    d2.load_state_dict(ours.state_dict(), strict=True)
    _assert_same_eval_outputs(ours, d2, synthetic_batch(seed=3))


def _train_losses_and_grads(model, batch, seed):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # ROI/anchor sampling draws from the global generator
    with EventStorage(0):
        losses = model(batch)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def test_train_losses_and_gradients_equal_detectron2():
    # Narrow R50 (same layer structure, fewer channels) to keep the backward pass fast.
    torch.manual_seed(0)
    d2, ours = _model_pair(MASK_RCNN_FPN_GN_YAML, make_small=True)
    _perturb(d2, seed=4)
    ours.load_state_dict(d2.state_dict(), strict=True)
    batch = synthetic_batch(seed=5)
    d2_losses, d2_grads = _train_losses_and_grads(d2, batch, seed=6)
    our_losses, our_grads = _train_losses_and_grads(ours, batch, seed=6)
    assert set(our_losses) == set(d2_losses) == {
        "loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"
    }
    for name in d2_losses:
        torch.testing.assert_close(our_losses[name], d2_losses[name], atol=1e-5, rtol=1e-5)
    assert set(our_grads) == set(d2_grads)
    for name in d2_grads:
        torch.testing.assert_close(our_grads[name], d2_grads[name], atol=1e-5, rtol=1e-4)


def test_c4_mask_rcnn_with_gn_res5_head_matches_detectron2():
    # Detectron2's Res5ROIHeads builds res5 with MODEL.RESNETS.NORM; GNRes5ROIHeads must agree.
    torch.manual_seed(0)
    d2, ours = _model_pair(MASK_RCNN_C4_YAML, make_small=True)
    assert type(ours.roi_heads).__name__ == "GNRes5ROIHeads"
    assert list(ours.state_dict()) == list(d2.state_dict())
    _perturb(d2, seed=7)
    ours.load_state_dict(d2.state_dict(), strict=True)
    _assert_same_eval_outputs(d2, ours, synthetic_batch(seed=8))
    _perturb(ours, seed=9)
    d2.load_state_dict(ours.state_dict(), strict=True)
    _assert_same_eval_outputs(ours, d2, synthetic_batch(seed=10))


def test_retinanet_with_gn_head_matches_detectron2():
    torch.manual_seed(0)
    d2, ours = _model_pair(RETINANET_YAML, make_small=True)
    assert type(ours).__name__ == "GNRetinaNet"
    assert list(ours.state_dict()) == list(d2.state_dict())
    assert "head.cls_subnet.1.weight" in d2.state_dict()  # Detectron2's GN layer of conv 0
    _perturb(d2, seed=11)
    ours.load_state_dict(d2.state_dict(), strict=True)
    _assert_same_eval_outputs(d2, ours, synthetic_batch(seed=12))
    _perturb(ours, seed=13)
    d2.load_state_dict(ours.state_dict(), strict=True)
    _assert_same_eval_outputs(ours, d2, synthetic_batch(seed=14))
