import pytest
from detectron2.config import get_cfg

from gn_det import add_gn_config
from gn_det.config import COMPONENT_NORM_KEYS, component_norm, gn_settings
from gn_det.layers import GNSettings


def _cfg():
    cfg = get_cfg()
    add_gn_config(cfg)
    return cfg


def test_defaults_are_the_papers():
    s = gn_settings(_cfg(), "BACKBONE")
    assert s == GNSettings(num_groups=32, channels_per_group=0, eps=1e-5, weight_std=False, ws_eps=1e-5)


def test_per_component_override_wins_and_none_inherits(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text(
        "MODEL:\n  GN:\n    NUM_GROUPS: 16\n    WEIGHT_STD: True\n"
        "    FPN:\n      CHANNELS_PER_GROUP: 8\n      WEIGHT_STD: False\n"
    )
    cfg = _cfg()
    cfg.merge_from_file(str(yaml))
    assert gn_settings(cfg, "BACKBONE") == GNSettings(num_groups=16, weight_std=True)
    assert gn_settings(cfg, "FPN") == GNSettings(num_groups=16, channels_per_group=8, weight_std=False)


def test_command_line_overrides_merge():
    cfg = _cfg()
    cfg.merge_from_list(["MODEL.GN.MASK_HEAD.NUM_GROUPS", "8", "MODEL.GN.EPS", "1e-6"])
    assert gn_settings(cfg, "MASK_HEAD") == GNSettings(num_groups=8, eps=1e-6)


def test_misspelled_key_fails_with_detectron2s_error(tmp_path):
    yaml = tmp_path / "bad.yaml"
    yaml.write_text("MODEL:\n  GN:\n    NUM_GRUOPS: 16\n")
    cfg = _cfg()
    with pytest.raises(KeyError, match="Non-existent config key: MODEL.GN.NUM_GRUOPS"):
        cfg.merge_from_file(str(yaml))


def test_component_norm_reads_detectron2s_norm_keys():
    cfg = _cfg()
    cfg.MODEL.FPN.NORM = "GN"
    cfg.MODEL.RPN.NORM = ""
    norm, settings = component_norm(cfg, "FPN")
    assert norm.name == "GN" and norm.component == "MODEL.FPN.NORM"
    assert component_norm(cfg, "RPN_HEAD")[0] == ""
    assert set(COMPONENT_NORM_KEYS) == {"BACKBONE", "FPN", "RPN_HEAD", "BOX_HEAD", "MASK_HEAD", "RETINANET_HEAD"}


def test_unknown_norm_name_in_config_names_the_key():
    cfg = _cfg()
    cfg.MODEL.ROI_MASK_HEAD.NORM = "gn"
    with pytest.raises(ValueError, match=r"Unknown norm 'gn' for MODEL\.ROI_MASK_HEAD\.NORM"):
        component_norm(cfg, "MASK_HEAD")


def test_missing_add_gn_config_is_explained():
    with pytest.raises(KeyError, match="add_gn_config"):
        gn_settings(get_cfg(), "FPN")
