"""A group count that does not divide a component's channels fails when the model is built, with
the component's config key in the message (not later, not from inside torch)."""
import pytest
from detectron2.modeling import build_model
from modeling_helpers import (
    MASK_RCNN_C4_YAML,
    MASK_RCNN_FPN_GN_YAML,
    RETINANET_YAML,
    narrow,
    use_gn_det_names,
    zoo_cfg,
)

import gn_det  # noqa: F401  (registers the names)
from gn_det.config import COMPONENT_NORM_KEYS
from gn_det.modeling import GNRes5ROIHeads

YAML_OF = {
    "BACKBONE": MASK_RCNN_FPN_GN_YAML,
    "FPN": MASK_RCNN_FPN_GN_YAML,
    "RPN_HEAD": MASK_RCNN_FPN_GN_YAML,
    "BOX_HEAD": MASK_RCNN_FPN_GN_YAML,
    "MASK_HEAD": MASK_RCNN_FPN_GN_YAML,
    "RETINANET_HEAD": RETINANET_YAML,
}


def _cfg_with_gn_in(component, yaml=None, **override):
    cfg = narrow(use_gn_det_names(zoo_cfg(yaml or YAML_OF[component])))
    cfg.merge_from_list([COMPONENT_NORM_KEYS[component], "GN"])
    for key, value in override.items():
        cfg.MODEL.GN[component][key] = value
    return cfg


@pytest.mark.parametrize("component", list(COMPONENT_NORM_KEYS))
@pytest.mark.parametrize(
    "override, wrong",
    [({"NUM_GROUPS": 7}, "num_groups=7"), ({"CHANNELS_PER_GROUP": 24}, "channels_per_group=24")],
    ids=["num_groups", "channels_per_group"],
)
def test_non_dividing_groups_fail_at_build_naming_the_component(component, override, wrong):
    cfg = _cfg_with_gn_in(component, **override)
    with pytest.raises(ValueError) as error:
        build_model(cfg)
    assert COMPONENT_NORM_KEYS[component] in str(error.value)
    assert wrong in str(error.value)


def test_non_dividing_groups_fail_in_the_res5_roi_head():
    # In a C4 model the backbone fails first; the res5 head must fail on its own as well.
    cfg = _cfg_with_gn_in("BACKBONE", MASK_RCNN_C4_YAML, NUM_GROUPS=7)
    with pytest.raises(ValueError, match="MODEL.RESNETS.NORM.*num_groups=7"):
        GNRes5ROIHeads._build_res5_block(cfg)


def test_same_groups_build_for_every_component():
    # Control: the configs above are valid apart from the group count.
    for component in COMPONENT_NORM_KEYS:
        build_model(_cfg_with_gn_in(component, NUM_GROUPS=16))
