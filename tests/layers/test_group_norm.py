import pytest
import torch
from torch import nn

from gn_det.layers import GroupNorm, resolve_num_groups

SHAPES_AND_GROUPS = [
    ((2, 64, 9, 7), dict(num_groups=32)),
    ((3, 256, 5, 5), dict(num_groups=16)),
    ((4, 32, 7, 7), dict(channels_per_group=8)),
    ((2, 48, 6, 10), dict(channels_per_group=16)),
]


def _affine_randomized(m):
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    return m


@pytest.mark.parametrize("shape,group_args", SHAPES_AND_GROUPS)
def test_forward_and_gradients_match_torch(shape, group_args):
    x = torch.randn(shape) * 3 + 1
    ours = _affine_randomized(GroupNorm(shape[1], **{"num_groups": None, **group_args}))
    ref = nn.GroupNorm(ours.num_groups, shape[1])
    ref.load_state_dict(ours.state_dict())

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


def test_channels_per_group_sets_group_count():
    assert GroupNorm(256, num_groups=None, channels_per_group=16).num_groups == 16
    assert GroupNorm(256, num_groups=32, channels_per_group=64).num_groups == 4  # cpg wins
    assert GroupNorm(64, num_groups=8).channels_per_group == 8


def test_state_dict_keys_are_torch_groupnorm_keys():
    assert set(GroupNorm(64).state_dict()) == set(nn.GroupNorm(32, 64).state_dict()) == {"weight", "bias"}
    assert GroupNorm(64, affine=False).state_dict() == {}


def test_gradcheck_float64():
    m = _affine_randomized(GroupNorm(8, num_groups=4)).double()
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5)


def test_one_group_equals_layernorm_over_chw():
    x = torch.randn(3, 12, 5, 4)
    ours = GroupNorm(12, num_groups=1, affine=False)
    ref = nn.LayerNorm([12, 5, 4], elementwise_affine=False, eps=1e-5)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_channels_groups_equals_instancenorm():
    x = torch.randn(3, 12, 5, 4)
    ours = _affine_randomized(GroupNorm(12, num_groups=12))
    ref = nn.InstanceNorm2d(12, affine=True, eps=1e-5)
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def _batch_independence_gap(norm: nn.Module) -> float:
    """Max difference of sample 0's train-mode output alone vs inside a batch of 4."""
    norm.train()
    x = torch.randn(4, 32, 6, 6) * torch.tensor([1.0, 3.0, 0.2, 5.0]).view(4, 1, 1, 1)
    alone = norm(x[:1])
    batched = norm(x)[:1]
    return (alone - batched).abs().max().item()


def test_gn_output_of_a_sample_does_not_depend_on_its_batch():
    assert _batch_independence_gap(GroupNorm(32, num_groups=8)) == 0.0


def test_bn_fails_the_batch_independence_test():
    # The same check on BatchNorm: it must fail, so the GN test above can fail.
    assert _batch_independence_gap(nn.BatchNorm2d(32)) > 0.1


@pytest.mark.parametrize(
    "channels,groups,cpg,match",
    [
        (80, 32, 0, r"num_groups=32 does not divide num_channels=80"),
        (64, None, 24, r"channels_per_group=24 does not divide num_channels=64"),
        (64, 0, 0, r"need num_groups > 0 or channels_per_group > 0"),
    ],
)
def test_bad_group_settings_raise_value_error(channels, groups, cpg, match):
    with pytest.raises(ValueError, match=match):
        resolve_num_groups(channels, groups, cpg, component="MODEL.FPN.NORM")
    with pytest.raises(ValueError, match=r"in MODEL\.FPN\.NORM"):
        GroupNorm(channels, groups, cpg, component="MODEL.FPN.NORM")
