"""Every benchmarked model does the same RoI work: fixed proposals in, fixed sampling counts,
fixed detections into the mask head."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from gn_det.benchmark import (
    BenchmarkedModel,
    WorkloadSpec,
    build_variant_cfg,
    make_workload,
    set_fixed_workload,
)

SPEC = WorkloadSpec(height=128, width=192, images_per_batch=2, seed=0, instances_per_image=3,
                    proposals_per_image=96, rois_per_image=32, detections_per_image=8)


@pytest.fixture(scope="module")
def workload():
    return make_workload(SPEC)


@pytest.fixture(scope="module")
def bench_b(workload):
    bench = BenchmarkedModel(build_variant_cfg("b", SPEC), seed=0)
    bench.set_workload(workload)
    yield bench
    bench.close()


def test_training_samples_exactly_the_fixed_rois(bench_b):
    with EventStorage(0) as storage:
        seconds = bench_b.train_step(seed=0)
        fg = storage.history("roi_head/num_fg_samples").latest()
        bg = storage.history("roi_head/num_bg_samples").latest()
    assert seconds > 0
    assert (fg, bg) == (8, 24)


def test_rpn_hands_the_roi_heads_the_fixed_proposals(bench_b, workload):
    model = bench_b.model.eval()
    with torch.no_grad():
        images = model.preprocess_image(bench_b.inputs)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
    for got, fixed in zip(proposals, workload.proposals):
        assert torch.equal(got.proposal_boxes.tensor, fixed.proposal_boxes.tensor)
        assert got.proposal_boxes.tensor.data_ptr() != fixed.proposal_boxes.tensor.data_ptr()


def test_inference_masks_exactly_the_fixed_detections(bench_b, workload):
    bench_b.inference_batch()
    with torch.no_grad():
        outputs = bench_b.model.eval()(bench_b.inputs)
    for out, fixed in zip(outputs, workload.detections):
        inst = out["instances"]
        assert len(inst) == SPEC.detections_per_image
        assert torch.allclose(inst.pred_boxes.tensor, fixed.pred_boxes.tensor)
        assert inst.pred_masks.shape == (SPEC.detections_per_image, SPEC.height, SPEC.width)


def test_fixed_detections_survive_repeated_inference(bench_b, workload):
    """Detectron2 rescales output boxes in place (here to a 2x output size): the fixed boxes
    handed to the mask head must be copies, not the workload's tensors."""
    before = workload.detections[0].pred_boxes.tensor.clone()
    inputs = [{**x, "height": 2 * SPEC.height, "width": 2 * SPEC.width} for x in bench_b.inputs]
    with torch.no_grad():
        for _ in range(2):
            out = bench_b.model.eval()(inputs)
    assert torch.allclose(out[0]["instances"].pred_boxes.tensor, 2 * before)
    assert torch.equal(bench_b.model.roi_heads.fixed_detections[0].pred_boxes.tensor, before)


def test_model_without_a_workload_says_what_to_call():
    cfg = build_variant_cfg("a", SPEC)
    model = build_model(cfg).eval()
    inputs = make_workload(SPEC).inputs
    with pytest.raises(RuntimeError, match=r"No fixed proposals.*set_fixed_workload"):
        with torch.no_grad():
            model(inputs)


def test_workload_for_other_image_sizes_is_refused(bench_b):
    other = make_workload(WorkloadSpec(**{**SPEC.__dict__, "height": 160}))
    set_fixed_workload(bench_b.model, other)
    try:
        with pytest.raises(RuntimeError, match=r"fixed proposals are for images of sizes \[\(160, 192\)"):
            with torch.no_grad():
                bench_b.model.eval()(bench_b.inputs)
    finally:
        bench_b.set_workload(make_workload(SPEC))


def test_set_fixed_workload_rejects_a_plain_detectron2_model(workload):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.MASK_ON = True
    model = build_model(cfg)
    with pytest.raises(TypeError, match="MODEL.PROPOSAL_GENERATOR.NAME='FixedProposalsRPN'"):
        set_fixed_workload(model, workload)
