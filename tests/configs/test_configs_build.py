"""Every YAML under configs/ (found by walking the directory, none skipped) merges with
add_gn_config, builds its model on CPU and runs an eval-mode forward on a small image; and the
built model has, in each component, the norm layers its config names.

MODEL.WEIGHTS is ignored (build only). Test-time proposal and detection counts are lowered so a
forward takes a fraction of a second; the architecture is the config's.
"""

from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import Conv2d, FrozenBatchNorm2d, NaiveSyncBatchNorm
from detectron2.modeling import build_model
from torch import nn

from gn_det import add_gn_config
from gn_det.config import COMPONENT_NORM_KEYS, gn_settings
from gn_det.layers import GroupNorm, WSConv2d, resolve_num_groups

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL_YAMLS = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.y*ml"))
HEIGHT, WIDTH = 64, 96

NORM_CLASSES = (GroupNorm, nn.GroupNorm, nn.BatchNorm2d, FrozenBatchNorm2d, nn.SyncBatchNorm)


def _cfg(rel_path: str):
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(str(CONFIGS / rel_path))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.INPUT.MIN_SIZE_TEST = HEIGHT
    cfg.INPUT.MAX_SIZE_TEST = WIDTH
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 100
    # A random-init model's scores are arbitrary: keep every candidate so the box and mask
    # heads' inference paths run.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = -1.0
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = -1.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 5
    cfg.freeze()
    return cfg


@pytest.fixture(scope="module", params=ALL_YAMLS)
def built(request):
    """(rel_path, cfg, eval-mode model), one config at a time (the fixture is torn down before
    the next config's, so only one model is in memory)."""
    torch.manual_seed(0)
    cfg = _cfg(request.param)
    model = build_model(cfg).eval()
    yield request.param, cfg, model
    del model


def test_configs_were_found():
    assert "Base-GN-RCNN-FPN.yaml" in ALL_YAMLS and len(ALL_YAMLS) >= 40


def test_eval_forward_on_a_small_image(built):
    rel_path, cfg, model = built
    # A normalized N(0, 1) image in the config's pixel space: random-init nets without a norm
    # (BN*, BN running stats at init) stay finite on it, as they would not on raw 0-255 pixels.
    torch.manual_seed(1)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1)
    image = mean + std * torch.randn(len(cfg.MODEL.PIXEL_MEAN), HEIGHT, WIDTH)
    with torch.no_grad():
        outputs = model([{"image": image, "height": HEIGHT, "width": WIDTH}])
    assert len(outputs) == 1
    instances = outputs[0]["instances"]
    assert instances.image_size == (HEIGHT, WIDTH)
    assert 0 < len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE, rel_path
    boxes = instances.pred_boxes.tensor
    assert torch.isfinite(boxes).all() and torch.isfinite(instances.scores).all()
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    assert instances.pred_classes.max() < cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if cfg.MODEL.MASK_ON:
        assert instances.pred_masks.shape == (len(instances), HEIGHT, WIDTH)
    else:
        assert not instances.has("pred_masks")


def _components(model, cfg):
    """gn_det component name -> the built modules that take that component's norm."""
    backbone = model.backbone
    parts = {}
    if hasattr(backbone, "bottom_up"):  # FPN: the ResNet, then FPN's own layers
        parts["BACKBONE"] = [backbone.bottom_up]
        parts["FPN"] = [m for name, m in backbone.named_children() if name != "bottom_up"]
    else:
        parts["BACKBONE"] = [backbone]
    if hasattr(model, "head"):  # RetinaNet
        parts["RETINANET_HEAD"] = [model.head]
    if hasattr(model, "proposal_generator") and model.proposal_generator is not None:
        parts["RPN_HEAD"] = [model.proposal_generator.rpn_head]
    roi_heads = getattr(model, "roi_heads", None)
    if roi_heads is not None:
        if hasattr(roi_heads, "res5"):  # C4: res5 is part of the backbone's ResNet
            parts["BACKBONE"].append(roi_heads.res5)
        if hasattr(roi_heads, "box_head"):  # a ModuleList of one head per stage in Cascade
            parts["BOX_HEAD"] = [roi_heads.box_head]
        if getattr(roi_heads, "mask_on", False) and cfg.MODEL.ROI_MASK_HEAD.NUM_CONV > 0:
            # With no convs before its deconv (C4's default) the mask head has nothing to normalize.
            parts["MASK_HEAD"] = [roi_heads.mask_head]
    return parts


def _frozen_stage_names(cfg):
    """Names of the ResNet children Detectron2 freezes (BN becomes FrozenBN in them)."""
    freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    stem = {"stem"} if freeze_at >= 1 else set()
    return stem | {f"res{k}" for k in range(2, freeze_at + 1)}


# Norm name -> the classes gn_det builds for it (exact types: SyncBN layers are BN subclasses).
EXPECTED_NORM_TYPES = {
    "GN": (GroupNorm,),
    "LN": (GroupNorm,),
    "IN": (GroupNorm,),
    "BN": (nn.BatchNorm2d,),
    "SyncBN": (nn.SyncBatchNorm, NaiveSyncBatchNorm),
    "FrozenBN": (FrozenBatchNorm2d,),
}


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _norm_layers(module, skip_children=()):
    for name, child in module.named_children():
        if name in skip_children:
            continue
        if isinstance(child, NORM_CLASSES):
            yield child
        else:
            yield from _norm_layers(child)


def test_each_component_has_the_norm_its_config_names(built):
    rel_path, cfg, model = built
    frozen = _frozen_stage_names(cfg)
    for component, modules in _components(model, cfg).items():
        norm = _get(cfg, COMPONENT_NORM_KEYS[component])
        settings = gn_settings(cfg, component)
        layers = []
        for module in modules:
            if component == "BACKBONE" and norm in ("BN", "SyncBN"):
                # Frozen stages hold FrozenBN whatever the norm (Detectron2's freeze()).
                layers += list(_norm_layers(module, skip_children=frozen))
                for name in frozen & {n for n, _ in module.named_children()}:
                    assert all(
                        isinstance(m, FrozenBatchNorm2d)
                        for m in _norm_layers(getattr(module, name))
                    ), (rel_path, name)
            else:
                layers += list(_norm_layers(module))
        where = f"{rel_path}: {component} ({COMPONENT_NORM_KEYS[component]}={norm!r})"
        if norm == "":
            assert (
                layers == []
            ), f"{where} has norm layers {sorted({type(m).__name__ for m in layers})}"
            continue
        assert layers, f"{where} has no norm layer"
        expected = EXPECTED_NORM_TYPES[norm]
        wrong = sorted({_qualname(type(m)) for m in layers if type(m) not in expected})
        assert not wrong, (
            f"{where} has {wrong}, expected {[_qualname(t) for t in expected]}: is it built by "
            f"gn_det's registered component (Detectron2's take the norm name, not MODEL.GN.*)?"
        )
        if norm == "GN":
            for m in layers:
                groups = resolve_num_groups(
                    m.num_channels, settings.num_groups, settings.channels_per_group
                )
                assert m.num_groups == groups and m.eps == settings.eps, where


def test_weight_standardization_where_configured(built):
    rel_path, cfg, model = built
    for component, modules in _components(model, cfg).items():
        settings = gn_settings(cfg, component)
        normed_convs = [
            m
            for module in modules
            for m in module.modules()
            if isinstance(m, Conv2d) and m.norm is not None
        ]
        standardized = [isinstance(m, WSConv2d) for m in normed_convs]
        assert standardized == [settings.weight_std] * len(normed_convs), (rel_path, component)
