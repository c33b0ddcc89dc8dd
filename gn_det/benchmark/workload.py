"""A fixed, seeded workload: the same images, instances, proposals and detections for every model.

Untrained models propose different boxes, so left alone each variant would sample a different
number of positive RoIs and send a different number of detections to the mask head: different
work, meaningless ratios. The workload therefore carries, per image,

- ``proposals``: what the RoI heads receive instead of the RPN's own proposals. Enough of them
  overlap a ground-truth box (IoU >= 0.55) and enough do not (IoU < 0.45 with every box) that
  Detectron2's sampler always picks exactly ``rois_per_image`` RoIs of which exactly
  ``round(rois_per_image * positive_fraction)`` are positives;
- ``detections``: what the mask head receives at inference instead of the box head's detections
  (``detections_per_image`` boxes, as many as Detectron2 keeps at most per image).

See ``fixed_workload.py`` for the modules that substitute them.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from detectron2.structures import Boxes, Instances, PolygonMasks, pairwise_iou

__all__ = ["WorkloadSpec", "Workload", "make_workload"]

# Margins around Detectron2's default 0.5 IoU threshold, so float rounding cannot flip a label.
_POSITIVE_MIN_IOU = 0.55
_NEGATIVE_MAX_IOU = 0.45
_POLYGON_VERTICES = 12


@dataclass(frozen=True)
class WorkloadSpec:
    """What one benchmark row feeds each model.

    ``rois_per_image`` and ``positive_fraction`` are written into the model's config
    (``MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE`` / ``POSITIVE_FRACTION``); ``proposals_per_image``
    into ``MODEL.RPN.POST_NMS_TOPK_{TRAIN,TEST}`` and ``detections_per_image`` into
    ``TEST.DETECTIONS_PER_IMAGE``, so the fixed workload is the size the config says.
    """

    height: int
    width: int
    images_per_batch: int
    seed: int = 0
    instances_per_image: int = 8
    proposals_per_image: int = 1000
    rois_per_image: int = 512
    positive_fraction: float = 0.25
    detections_per_image: int = 100
    num_classes: int = 80

    @property
    def positive_rois_per_image(self) -> int:
        # Detectron2's subsample_labels: int(batch_size_per_image * positive_fraction).
        return int(self.rois_per_image * self.positive_fraction)

    @property
    def negative_rois_per_image(self) -> int:
        return self.rois_per_image - self.positive_rois_per_image

    @property
    def positive_proposals_per_image(self) -> int:
        # A quarter of the proposals overlap an object: comfortably more than the sampler takes.
        return max(self.positive_rois_per_image, self.proposals_per_image // 4)

    def validate(self) -> None:
        """Raise ValueError naming the setting that makes the fixed counts impossible."""
        for name in ("height", "width", "images_per_batch", "instances_per_image",
                     "proposals_per_image", "rois_per_image", "detections_per_image"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WorkloadSpec.{name} must be > 0, got {getattr(self, name)}.")
        if not 0.0 < self.positive_fraction <= 1.0:
            raise ValueError(
                f"WorkloadSpec.positive_fraction must be in (0, 1], got {self.positive_fraction}."
            )
        if min(self.height, self.width) < 64:
            raise ValueError(
                f"Image size {self.height}x{self.width} is too small for R50-FPN (stride 64 at p6); "
                "use at least 64x64."
            )
        positives = self.positive_proposals_per_image
        negatives = self.proposals_per_image - positives
        if negatives < self.negative_rois_per_image:
            raise ValueError(
                f"proposals_per_image={self.proposals_per_image} leaves {negatives} negative proposals, "
                f"fewer than the {self.negative_rois_per_image} negatives that rois_per_image="
                f"{self.rois_per_image} with positive_fraction={self.positive_fraction} samples; "
                f"use proposals_per_image >= {math.ceil(self.negative_rois_per_image * 4 / 3)}."
            )
        if self.detections_per_image > self.proposals_per_image:
            raise ValueError(
                f"detections_per_image={self.detections_per_image} exceeds proposals_per_image="
                f"{self.proposals_per_image}; detections are drawn from the proposals."
            )


@dataclass
class Workload:
    """One batch of model inputs and the fixed boxes substituted inside the model.

    ``inputs``: Detectron2 model inputs, one dict per image: ``image`` (uint8, (3, H, W), BGR),
    ``instances`` (``gt_boxes`` XYXY pixels, ``gt_classes``, ``gt_masks`` as polygons, Detectron2's
    default mask format). ``proposals``: per image, ``proposal_boxes`` and ``objectness_logits``.
    ``detections``: per image, ``pred_boxes``, ``pred_classes`` and ``scores``.
    """

    spec: WorkloadSpec
    inputs: List[Dict]
    proposals: List[Instances]
    detections: List[Instances]


def _random_boxes(gen: torch.Generator, n: int, height: int, width: int,
                  min_side: float, max_side: float) -> torch.Tensor:
    """(n, 4) XYXY boxes inside the image, side lengths log-uniform in [min_side, max_side]."""
    log_lo, log_hi = math.log(min_side), math.log(max_side)
    scale = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, generator=gen))
    aspect = torch.exp((torch.rand(n, generator=gen) - 0.5) * math.log(4.0))  # in [1/2, 2]
    w = (scale * aspect.sqrt()).clamp(max=width - 1)
    h = (scale / aspect.sqrt()).clamp(max=height - 1)
    x0 = torch.rand(n, generator=gen) * (width - w)
    y0 = torch.rand(n, generator=gen) * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _ellipse_polygon(box: List[float]) -> List[float]:
    """The ellipse inscribed in an XYXY box, as one flat polygon [x0, y0, x1, y1, ...]."""
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    coords = []
    for k in range(_POLYGON_VERTICES):
        angle = 2 * math.pi * k / _POLYGON_VERTICES
        coords += [cx + rx * math.cos(angle), cy + ry * math.sin(angle)]
    return coords


def _jittered_positives(gen: torch.Generator, gt: torch.Tensor, n: int, height: int,
                        width: int) -> torch.Tensor:
    """(n, 4) boxes, each a shifted and rescaled copy of a GT box with IoU >= 0.55 to it."""
    chosen = []
    count = 0
    for _ in range(100):
        owner = torch.randint(len(gt), (4 * n,), generator=gen)
        base = gt[owner]
        wh = base[:, 2:] - base[:, :2]
        center = (base[:, :2] + base[:, 2:]) / 2 + (torch.rand(4 * n, 2, generator=gen) - 0.5) * 0.2 * wh
        new_wh = wh * torch.exp((torch.rand(4 * n, 2, generator=gen) - 0.5) * 0.4)
        boxes = torch.cat([center - new_wh / 2, center + new_wh / 2], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        iou = pairwise_iou(Boxes(boxes), Boxes(base)).diagonal()
        good = boxes[iou >= _POSITIVE_MIN_IOU]
        chosen.append(good)
        count += len(good)
        if count >= n:
            return torch.cat(chosen)[:n]
    raise RuntimeError(f"Could not draw {n} positive proposals around {len(gt)} boxes.")


def _background_boxes(gen: torch.Generator, gt: torch.Tensor, n: int, height: int,
                      width: int) -> torch.Tensor:
    """(n, 4) boxes whose IoU with every GT box is < 0.45."""
    chosen = []
    count = 0
    max_side = max(16.0, min(height, width) / 2)
    for _ in range(100):
        boxes = _random_boxes(gen, 4 * n, height, width, min_side=8.0, max_side=max_side)
        max_iou = pairwise_iou(Boxes(boxes), Boxes(gt)).max(dim=1).values
        good = boxes[max_iou < _NEGATIVE_MAX_IOU]
        chosen.append(good)
        count += len(good)
        if count >= n:
            return torch.cat(chosen)[:n]
    raise RuntimeError(
        f"Could not draw {n} background proposals in a {height}x{width} image: the "
        f"{len(gt)} objects cover it; use fewer instances_per_image or larger images."
    )


def _image_workload(gen: torch.Generator, spec: WorkloadSpec) -> Tuple[Dict, Instances, Instances]:
    H, W = spec.height, spec.width
    image = torch.randint(0, 256, (3, H, W), generator=gen, dtype=torch.uint8)
    gt_boxes = _random_boxes(gen, spec.instances_per_image, H, W,
                             min_side=min(24.0, min(H, W) / 4), max_side=min(H, W) / 2)
    gt_classes = torch.randint(spec.num_classes, (spec.instances_per_image,), generator=gen)
    masks = PolygonMasks([[_ellipse_polygon(b)] for b in gt_boxes.tolist()])
    instances = Instances((H, W), gt_boxes=Boxes(gt_boxes), gt_classes=gt_classes, gt_masks=masks)

    n_pos = spec.positive_proposals_per_image
    positives = _jittered_positives(gen, gt_boxes, n_pos, H, W)
    negatives = _background_boxes(gen, gt_boxes, spec.proposals_per_image - n_pos, H, W)
    boxes = torch.cat([positives, negatives])
    # RPN output is sorted by objectness; the values themselves are not used downstream.
    logits = torch.sort(torch.randn(len(boxes), generator=gen), descending=True).values
    proposals = Instances((H, W), proposal_boxes=Boxes(boxes), objectness_logits=logits)

    # Detections: the first proposals (objects first), labelled with their object's class.
    det_boxes = boxes[: spec.detections_per_image]
    owner = pairwise_iou(Boxes(det_boxes), Boxes(gt_boxes)).argmax(dim=1)
    detections = Instances(
        (H, W),
        pred_boxes=Boxes(det_boxes),
        pred_classes=gt_classes[owner],
        scores=torch.linspace(0.99, 0.5, len(det_boxes)),
    )
    return {"image": image, "instances": instances, "height": H, "width": W}, proposals, detections


def make_workload(spec: WorkloadSpec) -> Workload:
    """Build the seeded workload of one benchmark row (CPU tensors; see ``Workload``)."""
    spec.validate()
    gen = torch.Generator().manual_seed(spec.seed)
    inputs, proposals, detections = [], [], []
    for _ in range(spec.images_per_batch):
        x, p, d = _image_workload(gen, spec)
        inputs.append(x)
        proposals.append(p)
        detections.append(d)
    return Workload(spec, inputs, proposals, detections)
