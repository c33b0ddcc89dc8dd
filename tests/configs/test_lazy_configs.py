"""The LazyConfig (.py) configs: each one with a YAML twin builds the same model (state_dict keys
and shapes, module classes, and for two of them the same outputs from the same weights); every
one saves with LazyConfig.save as plain YAML that builds the same model again; the LSJ GN configs
keep Detectron2's new-baseline recipe.

Models are built on the ``meta`` device (shapes without memory or initialization: ~0.2 s for an
R50) except where outputs are compared.
"""
import os

import pytest
import torch
import yaml
from detectron2 import model_zoo as d2_model_zoo
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from gn_det import model_zoo

PY_CONFIGS = [name for name in model_zoo.list_configs() if name.endswith(".py")]
TWINS = [name for name in PY_CONFIGS if name[: -len(".py")] + ".yaml" in model_zoo.list_configs()]
LSJ = [name for name in PY_CONFIGS if name.startswith("new_baselines/") and "_LSJ_gn" in name]
HEIGHT, WIDTH = 64, 96


def _yaml_twin(name: str, device: str):
    cfg = model_zoo.get_config(name[: -len(".py")] + ".yaml")
    cfg.MODEL.DEVICE = device
    return cfg


def _layout(model):
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    classes = {n: type(m) for n, m in model.named_modules()}
    return state, classes


def test_the_families_are_there():
    assert "Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py" in TWINS
    assert "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_gn.py" in TWINS
    assert len(TWINS) >= 7 and len(LSJ) >= 10


@pytest.mark.parametrize("name", TWINS)
def test_py_config_builds_the_model_of_its_yaml_twin(name):
    with torch.device("meta"):
        lazy = instantiate(model_zoo.get_config(name).model)
        twin = build_model(_yaml_twin(name, "meta"))
    (lazy_state, lazy_classes), (twin_state, twin_classes) = _layout(lazy), _layout(twin)
    assert lazy_state == twin_state
    # The same class at every name: GN layers, WS and fused convs, heads, meta-architecture.
    assert lazy_classes == twin_classes


@pytest.mark.parametrize(
    "name", ["Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x_gn_ws.py"]
)
def test_py_config_and_yaml_twin_give_the_same_detections_from_the_same_weights(name):
    # Beyond shapes: test-time settings (pixel statistics, proposal counts, NMS) agree too. Both
    yaml_cfg = _yaml_twin(name, "cpu")
    # keep every candidate box (a random-init model's scores are arbitrary), 5 per image, from 50
    # proposals (the box head's cost).
    yaml_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, yaml_cfg.TEST.DETECTIONS_PER_IMAGE = -1.0, 5
    yaml_cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    lazy_cfg = model_zoo.get_config(name)
    lazy_cfg.model.roi_heads.box_predictor.update(test_score_thresh=-1.0, test_topk_per_image=5)
    lazy_cfg.model.proposal_generator.post_nms_topk = [lazy_cfg.model.proposal_generator.post_nms_topk[0], 50]
    twin = build_model(yaml_cfg).eval()
    lazy = instantiate(lazy_cfg.model).eval()
    lazy.load_state_dict(twin.state_dict())
    torch.manual_seed(1)
    image = lazy.pixel_mean.view(-1, 1, 1) + 50 * torch.randn(3, HEIGHT, WIDTH)
    inputs = [{"image": image, "height": HEIGHT, "width": WIDTH}]
    with torch.no_grad():
        expected, actual = twin(inputs)[0]["instances"], lazy(inputs)[0]["instances"]
    assert len(expected) > 0 and len(actual) == len(expected)
    torch.testing.assert_close(actual.pred_boxes.tensor, expected.pred_boxes.tensor)
    torch.testing.assert_close(actual.scores, expected.scores)
    torch.testing.assert_close(actual.pred_masks, expected.pred_masks)


@pytest.mark.parametrize("name", PY_CONFIGS)
def test_py_config_saves_as_plain_yaml_that_loads_back_the_same_and_builds(name, tmp_path):
    path, again = tmp_path / "config.yaml", tmp_path / "again.yaml"
    LazyConfig.save(model_zoo.get_config(name), str(path))
    assert not os.path.exists(f"{path}.pkl"), "LazyConfig.save fell back to a pickle"
    yaml.safe_load(path.read_text())  # plain YAML: no python/object tags
    saved = LazyConfig.load(str(path))
    LazyConfig.save(saved, str(again))
    assert again.read_text() == path.read_text()  # nothing lost or changed on the way
    with torch.device("meta"):
        assert instantiate(saved.model).state_dict()


@pytest.mark.parametrize("name", LSJ)
def test_lsj_gn_config_keeps_detectron2s_data_optimizer_and_schedule(name):
    # mask_rcnn_R_50_FPN_100ep_LSJ_gn_ws.py -> Detectron2's mask_rcnn_R_50_FPN_100ep_LSJ.py
    d2_name = name.split("_LSJ_gn")[0] + "_LSJ.py"
    ours, theirs = model_zoo.get_config(name), d2_model_zoo.get_config(d2_name)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert OmegaConf.to_container(ours[key]) == OmegaConf.to_container(theirs[key]), key
    # Detectron2's model layout, GN instead of SyncBN: from scratch, 2-conv RPN, 4conv1fc head.
    model = ours.model
    assert model.backbone.bottom_up.freeze_at == 0 and model.backbone.bottom_up.norm == "GN"
    assert model.proposal_generator.head.conv_dims == [-1, -1]
    assert model.roi_heads.box_head.conv_dims == [256] * 4 and model.roi_heads.box_head.fc_dims == [1024]
    assert model.backbone.bottom_up.depth == (101 if "R_101" in name else 50)
    weight_std = [model.backbone.bottom_up, model.backbone, model.roi_heads.box_head, model.roi_heads.mask_head]
    assert all(bool(b.conv_settings and b.conv_settings.weight_std) == name.endswith("_ws.py") for b in weight_std)
