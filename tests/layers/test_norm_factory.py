import pytest
import torch
from detectron2.layers import BatchNorm2d, FrozenBatchNorm2d, NaiveSyncBatchNorm, get_norm
from torch import nn

from gn_det.layers import NORM_NAMES, GNSettings, GroupNorm, build_norm_factory


def test_every_name_builds_a_module_detectron2_accepts():
    expected = {
        "BN": BatchNorm2d,
        "SyncBN": (nn.SyncBatchNorm, NaiveSyncBatchNorm),
        "FrozenBN": FrozenBatchNorm2d,
        "GN": GroupNorm,
        "LN": GroupNorm,
        "IN": GroupNorm,
    }
    for name, cls in expected.items():
        factory = build_norm_factory(name)
        layer = get_norm(factory, 64)  # Detectron2's own entry point takes the callable
        assert isinstance(layer, cls), name
        assert layer(torch.randn(2, 64, 4, 4)).shape == (2, 64, 4, 4)
    assert set(expected) | {""} == set(NORM_NAMES)


def test_empty_name_means_no_norm_the_detectron2_way():
    assert build_norm_factory("") == ""
    assert get_norm(build_norm_factory(""), 64) is None


def test_ln_and_in_are_gn_with_one_group_and_one_channel_per_group():
    settings = GNSettings(eps=1e-6)
    ln = build_norm_factory("LN", settings)(48)
    inorm = build_norm_factory("IN", settings)(48)
    assert (ln.num_groups, ln.eps) == (1, 1e-6)
    assert (inorm.num_groups, inorm.eps) == (48, 1e-6)


def test_gn_settings_reach_the_layer():
    gn = build_norm_factory("GN", GNSettings(num_groups=8, eps=1e-3))(64)
    assert (gn.num_groups, gn.eps) == (8, 1e-3)
    gn = build_norm_factory("GN", GNSettings(num_groups=32, channels_per_group=16))(256)
    assert gn.num_groups == 16


def test_unknown_name_raises_naming_it_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown norm 'GroupNorm' for MODEL\.FPN\.NORM; valid names: 'BN'"):
        build_norm_factory("GroupNorm", component="MODEL.FPN.NORM")


def test_non_dividing_groups_fail_when_the_layer_is_built():
    factory = build_norm_factory("GN", GNSettings(num_groups=32), component="MODEL.ROI_BOX_HEAD.NORM")
    with pytest.raises(ValueError, match=r"MODEL\.ROI_BOX_HEAD\.NORM.*num_groups=32 does not divide num_channels=80"):
        factory(80)
    with pytest.raises(ValueError, match=r"num_channels=80"):
        factory.check_channels(80)
