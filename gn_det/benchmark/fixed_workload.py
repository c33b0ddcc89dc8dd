"""Detectron2 modules that run as usual but hand the next stage a fixed set of boxes.

They are registered under their own names (``MODEL.PROPOSAL_GENERATOR.NAME: FixedProposalsRPN``,
``MODEL.ROI_HEADS.NAME: FixedDetectionsROIHeads``) when ``gn_det.benchmark`` is imported, and are
used only by the benchmark: every variant does exactly the same amount of RoI work.

- ``FixedProposalsRPN`` is Detectron2's ``RPN``: head, anchors, losses, box decoding, top-k and
  NMS all run (so their cost stays in the step), then the proposals are replaced by the fixed ones.
- ``FixedDetectionsROIHeads`` is Detectron2's ``StandardROIHeads``: sampling, box head, box
  predictor, losses and box post-processing run as usual; at inference, the mask head receives
  the fixed detections instead of the box branch's (for untrained models, nearly none pass the
  score threshold, so the mask head would otherwise do no work at all).
"""
from typing import List, Sequence

from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, Instances

from .workload import Workload

__all__ = ["FixedProposalsRPN", "FixedDetectionsROIHeads", "set_fixed_workload"]


def _check_sizes(what: str, fixed: Sequence[Instances], image_sizes: Sequence) -> None:
    if fixed is None:
        raise RuntimeError(
            f"No fixed {what} set on this model: call gn_det.benchmark.set_fixed_workload(model, "
            "workload) before running it."
        )
    sizes = [tuple(x.image_size) for x in fixed]
    if sizes != [tuple(s) for s in image_sizes]:
        raise RuntimeError(
            f"The fixed {what} are for images of sizes {sizes}, but the model got {list(image_sizes)}: "
            "set the workload that matches the inputs."
        )


@PROPOSAL_GENERATOR_REGISTRY.register()
class FixedProposalsRPN(RPN):
    """Detectron2's RPN whose returned proposals are a fixed set (see module docstring)."""

    fixed_proposals: List[Instances] = None

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        # Decode and NMS the model's own proposals as Detectron2 does, so that work is timed...
        super().predict_proposals(anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes)
        # ...but hand the RoI heads the same boxes in every variant. Fresh copies: Detectron2
        # edits boxes in place (clip, scale) downstream.
        _check_sizes("proposals", self.fixed_proposals, image_sizes)
        return [
            Instances(
                p.image_size,
                proposal_boxes=Boxes(p.proposal_boxes.tensor.clone()),
                objectness_logits=p.objectness_logits.clone(),
            )
            for p in self.fixed_proposals
        ]


@ROI_HEADS_REGISTRY.register()
class FixedDetectionsROIHeads(StandardROIHeads):
    """Detectron2's StandardROIHeads whose mask head, at inference, sees fixed detections."""

    fixed_detections: List[Instances] = None

    def forward_with_given_boxes(self, features, instances):
        _check_sizes("detections", self.fixed_detections, [x.image_size for x in instances])
        fixed = [
            Instances(
                d.image_size,
                pred_boxes=Boxes(d.pred_boxes.tensor.clone()),
                pred_classes=d.pred_classes.clone(),
                scores=d.scores.clone(),
            )
            for d in self.fixed_detections
        ]
        return super().forward_with_given_boxes(features, fixed)


def set_fixed_workload(model, workload: Workload) -> None:
    """Give a model built with the two modules above the fixed boxes of ``workload``.

    ``model`` is a Detectron2 ``GeneralizedRCNN``; tensors are moved to its device.
    """
    rpn, heads = getattr(model, "proposal_generator", None), getattr(model, "roi_heads", None)
    if not isinstance(rpn, FixedProposalsRPN) or not isinstance(heads, FixedDetectionsROIHeads):
        raise TypeError(
            "set_fixed_workload needs a model built with MODEL.PROPOSAL_GENERATOR.NAME="
            "'FixedProposalsRPN' and MODEL.ROI_HEADS.NAME='FixedDetectionsROIHeads'; got "
            f"{type(rpn).__name__} and {type(heads).__name__}."
        )
    device = model.device
    rpn.fixed_proposals = [p.to(device) for p in workload.proposals]
    heads.fixed_detections = [d.to(device) for d in workload.detections]
