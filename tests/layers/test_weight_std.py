import torch
from detectron2.layers import Conv2d

from gn_det.layers import GroupNorm, WSConv2d, convert_to_weight_std, standardize_weight


def test_effective_weight_has_zero_mean_unit_std_per_output_channel():
    conv = WSConv2d(16, 8, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.mul_(7).add_(3)  # far from standardized
    w = conv.effective_weight().flatten(1)
    torch.testing.assert_close(w.mean(1), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(w.std(1, correction=0), torch.ones(8), atol=1e-3, rtol=0)


def test_gradients_flow_to_the_raw_weight():
    conv = WSConv2d(4, 6, kernel_size=3, padding=1, bias=False)
    x = torch.randn(2, 4, 8, 8)
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None
    assert conv.weight.grad.abs().sum() > 0
    # The standardization is in the graph: the gradient differs from a plain conv's.
    plain = Conv2d(4, 6, kernel_size=3, padding=1, bias=False)
    plain.weight.data.copy_(conv.weight.data)
    plain(x).square().sum().backward()
    assert not torch.allclose(plain.weight.grad, conv.weight.grad)


def test_output_equals_plain_conv_with_standardized_weight():
    conv = WSConv2d(8, 8, kernel_size=3, padding=1, bias=False, norm=GroupNorm(8, 4), activation=torch.relu)
    ref = Conv2d(8, 8, kernel_size=3, padding=1, bias=False, norm=GroupNorm(8, 4), activation=torch.relu)
    ref.weight.data.copy_(standardize_weight(conv.weight.data))
    x = torch.randn(2, 8, 10, 10)
    torch.testing.assert_close(conv(x), ref(x))


def test_checkpoint_keys_stay_ordinary():
    ws = WSConv2d(8, 16, kernel_size=1, bias=False, norm=GroupNorm(16, 4))
    plain = Conv2d(8, 16, kernel_size=1, bias=False, norm=GroupNorm(16, 4))
    assert ws.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(ws.state_dict())  # strict: no renaming either way
    ws.load_state_dict(plain.state_dict())


def test_convert_touches_only_convs_with_a_norm():
    model = torch.nn.Sequential(
        Conv2d(3, 8, 3, norm=GroupNorm(8, 4)), Conv2d(8, 4, 1)  # a predictor-like conv
    )
    keys = set(model.state_dict())
    convert_to_weight_std(model, eps=1e-4)
    assert type(model[0]) is WSConv2d and model[0].ws_eps == 1e-4
    assert type(model[1]) is Conv2d
    assert set(model.state_dict()) == keys


def test_apply_conv_settings_switches_ws_on_and_off():
    from gn_det.layers import GNSettings, apply_conv_settings

    def block():
        return torch.nn.Sequential(Conv2d(3, 8, 3, norm=GroupNorm(8, 4)))

    # fused=False: this checks WS alone (WS with the fused path: tests/layers/test_fused_conv.py).
    assert type(apply_conv_settings(block(), GNSettings(weight_std=False, fused=False))[0]) is Conv2d
    m = apply_conv_settings(block(), GNSettings(weight_std=True, ws_eps=1e-3, fused=False))
    assert type(m[0]) is WSConv2d and m[0].ws_eps == 1e-3
