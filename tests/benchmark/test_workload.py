"""The benchmark's fixed workload: seeded, and forcing Detectron2's RoI sampler to fixed counts."""
import pytest
import torch
from detectron2.structures import pairwise_iou

from gn_det.benchmark import WorkloadSpec, make_workload

SPEC = WorkloadSpec(height=128, width=192, images_per_batch=2, seed=3, instances_per_image=3,
                    proposals_per_image=96, rois_per_image=32, detections_per_image=8)


def test_same_seed_gives_identical_workload():
    first, second = make_workload(SPEC), make_workload(SPEC)
    for a, b in zip(first.inputs, second.inputs):
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)
    for a, b in zip(first.proposals, second.proposals):
        assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)


def test_other_seed_gives_other_images():
    other = WorkloadSpec(**{**SPEC.__dict__, "seed": 4})
    assert not torch.equal(make_workload(SPEC).inputs[0]["image"], make_workload(other).inputs[0]["image"])


def test_shapes_and_counts_follow_the_spec():
    w = make_workload(SPEC)
    assert len(w.inputs) == len(w.proposals) == len(w.detections) == 2
    x = w.inputs[0]
    assert x["image"].shape == (3, 128, 192) and x["image"].dtype == torch.uint8
    assert len(x["instances"]) == 3 and len(x["instances"].gt_masks) == 3
    assert len(w.proposals[0]) == 96
    assert len(w.detections[0]) == 8
    boxes = w.proposals[0].proposal_boxes.tensor
    assert boxes[:, 0].min() >= 0 and boxes[:, 2].max() <= 192 and boxes[:, 3].max() <= 128


def test_proposals_split_cleanly_into_positives_and_negatives():
    """Positives overlap their object well above 0.5 IoU, negatives stay well below it, so
    Detectron2's matcher labels them the same way in every model."""
    w = make_workload(SPEC)
    for inputs, proposals in zip(w.inputs, w.proposals):
        iou = pairwise_iou(inputs["instances"].gt_boxes, proposals.proposal_boxes).max(dim=0).values
        n_pos = SPEC.positive_proposals_per_image
        assert n_pos == 24
        assert bool((iou[:n_pos] >= 0.55).all())
        assert bool((iou[n_pos:] < 0.45).all())
        assert n_pos + SPEC.instances_per_image >= SPEC.positive_rois_per_image
        assert len(iou) - n_pos >= SPEC.negative_rois_per_image


def test_positive_roi_count_is_detectron2s_rounding():
    assert WorkloadSpec(64, 64, 1, rois_per_image=512, positive_fraction=0.25).positive_rois_per_image == 128
    assert WorkloadSpec(64, 64, 1, rois_per_image=10, positive_fraction=0.25).positive_rois_per_image == 2


def test_too_few_proposals_is_rejected_with_the_fix():
    spec = WorkloadSpec(128, 192, 1, proposals_per_image=100, rois_per_image=512)
    with pytest.raises(ValueError, match=r"proposals_per_image=100 .* use proposals_per_image >= 512"):
        make_workload(spec)


def test_too_small_image_is_rejected():
    with pytest.raises(ValueError, match="32x192 is too small"):
        make_workload(WorkloadSpec(32, 192, 1))


def test_more_detections_than_proposals_is_rejected():
    spec = WorkloadSpec(128, 192, 1, proposals_per_image=96, rois_per_image=32, detections_per_image=200)
    with pytest.raises(ValueError, match="detections_per_image=200 exceeds proposals_per_image=96"):
        make_workload(spec)
