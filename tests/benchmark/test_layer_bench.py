"""The GN layer microbenchmark: real Mask R-CNN shapes, and its result fields."""
import pytest
import torch

from gn_det.benchmark import (
    BenchmarkedModel,
    GNShape,
    WorkloadSpec,
    build_variant_cfg,
    collect_gn_shapes,
    make_workload,
    run_layer_benchmark,
)

SPEC = WorkloadSpec(height=128, width=192, images_per_batch=2, instances_per_image=3,
                    proposals_per_image=96, rois_per_image=32, detections_per_image=8)


@pytest.fixture(scope="module")
def shapes():
    bench = BenchmarkedModel(build_variant_cfg("b", SPEC), seed=0)
    bench.set_workload(make_workload(SPEC))
    try:
        yield collect_gn_shapes(bench)
    finally:
        bench.close()


def _by_where(shapes, where):
    return [s for s in shapes if where in s.where]


def test_roi_head_shapes_follow_the_fixed_workload(shapes):
    n = SPEC.images_per_batch
    assert [s.shape for s in _by_where(shapes, "box_head (train)")] == [(n * 32, 256, 7, 7)]
    assert [s.shape for s in _by_where(shapes, "box_head (inference)")] == [(n * 96, 256, 7, 7)]
    assert [s.shape for s in _by_where(shapes, "mask_head (train)")] == [(n * 8, 256, 14, 14)]
    assert [s.shape for s in _by_where(shapes, "mask_head (inference)")] == [(n * 8, 256, 14, 14)]


def test_backbone_and_fpn_shapes_cover_every_stage(shapes):
    # 128x192 input: stem at stride 2, res2..res5 at strides 4..32; FPN GN at 256 channels.
    assert (2, 64, 64, 96) in [s.shape for s in _by_where(shapes, "stem (train)")]
    assert (2, 256, 32, 48) in [s.shape for s in _by_where(shapes, "res2 (train)")]
    assert (2, 2048, 4, 6) in [s.shape for s in _by_where(shapes, "res5 (train)")]
    assert {s.shape for s in _by_where(shapes, "fpn (train)")} == {
        (2, 256, 32, 48), (2, 256, 16, 24), (2, 256, 8, 12), (2, 256, 4, 6)}


def test_calls_count_every_gn_layer_once_per_pass(shapes):
    # R50: stem 1 + 16 blocks x 3 + 4 shortcut norms = 53; FPN 8; box head 4; mask head 4.
    per_pass = 53 + 8 + 4 + 4
    assert sum(s.calls for s in shapes) == 2 * per_pass
    assert all(s.num_groups == 32 for s in shapes)


def test_layer_benchmark_adds_calls_fractions_and_totals():
    shapes = [GNShape((4, 64, 8, 8), 32, ("res2 (train)",), 3), GNShape((2, 32, 4, 4), 8, ("x",), 2)]
    out = run_layer_benchmark(shapes, torch.device("cpu"), repeats=2, log=lambda m: None)
    assert out["function"] == "gn_det.benchmark.layer_timing.benchmark_group_norm"
    first = out["shapes"][0]
    assert first["shape"] == [4, 64, 8, 8] and first["groups"] == 32
    assert first["where"] == ["res2 (train)"] and first["calls_per_step"] == 3
    for phase in ("infer", "train"):
        fused = first[f"fused_{phase}_fraction_of_copy"]
        assert fused == pytest.approx(first[f"fused_{phase}_gbps"] / first["copy_gbps"])
        assert first[f"torch_{phase}_fraction_of_copy"] == pytest.approx(
            fused * first[f"fused_{phase}_ms"] / first[f"torch_{phase}_ms"])
    assert out["totals_ms"]["fused_train_ms"] == pytest.approx(
        3 * first["fused_train_ms"] + 2 * out["shapes"][1]["fused_train_ms"])


def test_shape_collection_needs_a_gn_model():
    bench = BenchmarkedModel(build_variant_cfg("a", SPEC), seed=0)
    bench.set_workload(make_workload(SPEC))
    try:
        with pytest.raises(ValueError, match="needs a model with GroupNorm layers"):
            collect_gn_shapes(bench)
    finally:
        bench.close()
