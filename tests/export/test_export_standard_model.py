"""The exported model: WS folded, fused GN back to nn.GroupNorm, scopes removed; the lowering
of the fused op under tracing/export; the class-count check."""

import pytest
import torch
from detectron2.layers import Conv2d
from detectron2.modeling import build_model

from export_helpers import build_eval_model, image, synthetic_cfg
from gn_det.export import (
    ModelConfigMismatchError,
    check_model_matches_config,
    fold_weight_standardization,
    standard_model,
    torchscript_on_purpose,
)
from gn_det.layers import FusedGNActConv2d, WSConv2d, group_norm_act, standardize_weight
from gn_det.layers.group_norm_act import standard_ops_only
from gn_det.layers.recompute import has_recompute_scope


def _outputs(model, im):
    with torch.no_grad():
        inst = model.inference([{"image": im}], do_postprocess=False)[0]
    return inst.pred_boxes.tensor, inst.scores, inst.pred_masks


@pytest.fixture(scope="module")
def ws_model():
    return build_eval_model(synthetic_cfg("mask_rcnn_R_18_FPN_gn_ws_scratch.yaml"))


def test_ws_fold_writes_standardized_weights_into_plain_convs(ws_model):
    folded = fold_weight_standardization(ws_model)
    original = dict(ws_model.named_modules())
    ws_names = [n for n, m in original.items() if isinstance(m, WSConv2d)]
    assert ws_names
    for name, m in folded.named_modules():
        assert not isinstance(m, WSConv2d), name
    folded_modules = dict(folded.named_modules())
    for name in ws_names:
        source, conv = original[name], folded_modules[name]
        torch.testing.assert_close(
            conv.weight, standardize_weight(source.weight, source.ws_eps), rtol=0, atol=0
        )
        # a fused WS conv stays fused (fold removes WS only)
        assert isinstance(conv, FusedGNActConv2d) == isinstance(source, FusedGNActConv2d)


def test_ws_fold_outputs_equal_unfolded_within_float32_rounding(ws_model):
    im = image(96, 96)
    folded = fold_weight_standardization(ws_model)
    for got, want in zip(_outputs(folded, im), _outputs(ws_model, im)):
        assert got.shape == want.shape and got.numel() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_ws_fold_leaves_the_original_model_unchanged(ws_model):
    before = {k: v.clone() for k, v in ws_model.state_dict().items()}
    fold_weight_standardization(ws_model)
    assert any(isinstance(m, WSConv2d) for m in ws_model.modules())
    for key, value in ws_model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_standard_model_has_only_detectron2_convs_and_no_recompute_scopes():
    model = build_model(synthetic_cfg())  # fused GN, recompute scopes on each component
    assert any(has_recompute_scope(m) for m in model.modules())
    plain = standard_model(model)
    assert not plain.training
    for name, m in plain.named_modules():
        assert not has_recompute_scope(m), name
        if isinstance(m, Conv2d):
            assert type(m) is Conv2d, (name, type(m))
    # FPN keeps its convs in Python lists too: those must be the converted modules.
    assert all(type(c) is Conv2d for c in plain.backbone.lateral_convs + plain.backbone.output_convs)
    assert plain.state_dict().keys() == model.state_dict().keys()


# Tracing a plain function (not a module) makes torch's own F.group_norm size check warn.
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean:torch.jit.TracerWarning")
def test_fused_group_norm_records_torch_group_norm_only_while_tracing():
    x = torch.randn(2, 8, 5, 5)
    weight, bias = torch.rand(8) + 0.5, torch.randn(8)
    assert not standard_ops_only()  # eager: the fused kernels

    def f(t):
        assert standard_ops_only()
        return group_norm_act(t, weight, bias, 4)

    with torchscript_on_purpose():  # TorchScript is what this test is about
        traced = torch.jit.trace(f, (x,), check_trace=False)
    graph = str(traced.graph)
    assert "aten::group_norm" in graph and "aten::relu" in graph and "gn_det::" not in graph
    expected = torch.relu(torch.nn.functional.group_norm(x, 4, weight, bias))
    torch.testing.assert_close(traced(x), expected)


def test_torch_export_of_the_fused_backbone_has_standard_ops():
    model = build_model(synthetic_cfg()).eval()
    x = image(96, 96)[None]
    with torch.no_grad():
        program = torch.export.export(model.backbone, (x,))
        eager = model.backbone(x)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not [t for t in targets if "gn_det" in t], targets
    assert any("group_norm" in t for t in targets), targets
    exported = program.module()(x)
    for key in eager:
        torch.testing.assert_close(exported[key], eager[key], rtol=1e-4, atol=1e-4)


def test_scripting_runs_the_standard_forward_of_a_fused_conv():
    conv = FusedGNActConv2d(
        4, 8, kernel_size=3, padding=1, bias=False, norm=torch.nn.GroupNorm(2, 8), activation=torch.nn.ReLU()
    )
    with torchscript_on_purpose():
        scripted = torch.jit.script(conv)
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(scripted(x), conv(x), rtol=1e-5, atol=1e-5)
    assert "gn_det::" not in str(scripted.graph)


def test_model_with_another_class_count_than_its_config_is_refused():
    cfg = synthetic_cfg()
    model = build_model(cfg)
    other = cfg.clone()
    other.MODEL.ROI_HEADS.NUM_CLASSES = 7
    check_model_matches_config(model, cfg)
    with pytest.raises(
        ModelConfigMismatchError,
        match=r"box_predictor.cls_score predicts 4 classes but MODEL.ROI_HEADS.NUM_CLASSES is 7",
    ):
        check_model_matches_config(model, other)


def test_a_module_with_a_recompute_scope_scripts_and_keeps_its_eager_scope():
    from gn_det.layers import install_recompute_scope

    block = install_recompute_scope(
        torch.nn.Sequential(
            FusedGNActConv2d(
                4,
                8,
                kernel_size=3,
                padding=1,
                bias=False,
                norm=torch.nn.GroupNorm(2, 8),
                activation=torch.nn.ReLU(),
            ),
            torch.nn.Conv2d(8, 2, 1),
        )
    )
    parent = torch.nn.Sequential(block)
    with torchscript_on_purpose():
        scripted = torch.jit.script(parent)  # compiles no hook: the scope is Python-only
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(scripted(x), parent(x), rtol=1e-5, atol=1e-5)
    assert has_recompute_scope(block)  # the module itself keeps its scope
