"""configs/Synthetic: every config builds its model and takes a training step on a shapes image."""
import glob
import math
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

import gn_det  # noqa: F401  registers gn_det's models and datasets
from gn_det import add_gn_config

from tiny_run import REPO

CONFIGS = sorted(
    p for p in glob.glob(os.path.join(REPO, "configs", "Synthetic", "*.yaml"))
    if not os.path.basename(p).startswith("Base-")
)
# File name "mask_rcnn_R_18_FPN_<variant>_scratch.yaml" -> (norm everywhere, weight standardization)
EXPECTED = {"gn": ("GN", False), "gn_ws": ("GN", True), "bn": ("BN", False), "syncbn": ("SyncBN", False)}


def _cfg(path):
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(path)
    return cfg


def test_the_family_is_gn_gn_ws_bn_and_syncbn():
    assert {os.path.basename(p) for p in CONFIGS} == {
        f"mask_rcnn_R_18_FPN_{variant}_scratch.yaml" for variant in EXPECTED}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_trains_from_scratch_on_the_embedded_dataset(path):
    cfg = _cfg(path)
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.BACKBONE.FREEZE_AT == 0, "from scratch, every stage trains"
    assert cfg.DATASETS.TRAIN == ("gn_det_shapes_train",) and cfg.DATASETS.TEST == ("gn_det_shapes_val",)
    assert cfg.INPUT.MASK_FORMAT == "bitmask" and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 4
    variant = os.path.basename(path)[len("mask_rcnn_R_18_FPN_"):-len("_scratch.yaml")]
    norm, weight_std = EXPECTED[variant]
    for key in ("RESNETS", "FPN", "ROI_BOX_HEAD", "ROI_MASK_HEAD"):
        assert cfg.MODEL[key].NORM == norm, key
    assert cfg.MODEL.GN.WEIGHT_STD == weight_std and cfg.MODEL.RPN.NORM == ""
    assert (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.RPN.HEAD_NAME, cfg.MODEL.ROI_BOX_HEAD.NAME, cfg.MODEL.ROI_MASK_HEAD.NAME) == (
        "build_gn_resnet_fpn_backbone", "GNRPNHead", "GNConvFCHead", "GNMaskRCNNConvUpsampleHead")
    model = build_model(cfg).train()
    masks = torch.zeros(2, 96, 96, dtype=torch.bool)
    masks[0, 10:40, 10:50] = True
    masks[1, 50:90, 40:80] = True
    inst = Instances((96, 96), gt_boxes=Boxes(torch.tensor([[10.0, 10, 50, 40], [40, 50, 80, 90]])),
                     gt_classes=torch.tensor([0, 3]), gt_masks=BitMasks(masks))
    batch = [{"image": torch.randint(0, 255, (3, 96, 96), dtype=torch.uint8), "instances": inst}] * 2
    with EventStorage(0):
        losses = model(batch)
    assert {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"} == set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())
