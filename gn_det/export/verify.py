"""Run an exported artifact and the eager model on the same images and compare their detections.

Detections are compared as Detectron2 produces them before the final resize
(``do_postprocess=False``): boxes in input pixels, scores, classes and, for Mask R-CNN, the RoI
mask probabilities (R, 1, M, M). Both sides must find the same number of detections with the same
classes; then the largest absolute differences are checked against ``TOLERANCES``.
"""

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Instances

from .exporters import torchscript_on_purpose

__all__ = [
    "TOLERANCES",
    "ExportVerificationError",
    "detections_of",
    "scripted_detections",
    "max_differences",
    "VerificationReport",
    "time_per_image_ms",
    "load_exported",
]

# Largest |exported - eager| accepted. The exported graph runs PyTorch's group_norm where the
# eager model runs gn_det's fused kernels (other summation order), so outputs differ by float32
# rounding propagated through the network; the measured differences are orders of magnitude
# below these (docs/deploy.md).
TOLERANCES = {"boxes": 1e-2, "scores": 1e-4, "masks": 1e-3}


class ExportVerificationError(RuntimeError):
    """The exported model's detections differ from the eager model's past ``TOLERANCES``."""


def detections_of(result) -> Dict[str, torch.Tensor]:
    """``{"boxes", "scores", "classes"[, "masks"]}`` from an ``Instances`` or a dict of its fields
    (what a scripted model returns)."""
    fields = result.get_fields() if isinstance(result, Instances) else dict(result)
    boxes = fields["pred_boxes"]
    out = {
        "boxes": (boxes.tensor if hasattr(boxes, "tensor") else boxes).detach().float().cpu(),
        "scores": fields["scores"].detach().float().cpu(),
        "classes": fields["pred_classes"].detach().cpu(),
    }
    if "pred_masks" in fields:
        out["masks"] = fields["pred_masks"].detach().float().cpu()
    return out


def scripted_detections(
    fields: Dict[str, torch.Tensor], image_size, postprocess: bool
) -> Dict[str, torch.Tensor]:
    """Detections from a scripted model's output dict. A scripted RetinaNet returns its
    detections before Detectron2's ``detector_postprocess`` (clip, drop empty boxes), which its
    eager forward applies; ``postprocess=True`` applies it, at the input's own size."""
    if not postprocess:
        return detections_of(fields)
    from detectron2.modeling.postprocessing import detector_postprocess
    from detectron2.structures import Boxes

    instances = Instances(tuple(image_size))
    instances.pred_boxes = Boxes(fields["pred_boxes"])
    for key in ("scores", "pred_classes"):
        instances.set(key, fields[key])
    return detections_of(detector_postprocess(instances, *image_size))


def _pair_detections(eager, exported) -> List[int]:
    """For each eager detection, the index of the exported one with its class and the nearest
    box. Detectron2 sorts detections by score, and two detections whose scores differ by float32
    rounding may come out in either order; pairing by box keeps that from reading as a difference."""
    free = list(range(len(exported["scores"])))
    order = []
    for i in range(len(eager["scores"])):
        same_class = [j for j in free if int(exported["classes"][j]) == int(eager["classes"][i])]
        if not same_class:
            raise ExportVerificationError(
                f"eager detection {i} (class {int(eager['classes'][i])}, score "
                f"{float(eager['scores'][i]):.4f}) has no exported counterpart of its class"
            )
        gaps = (exported["boxes"][same_class] - eager["boxes"][i]).abs().amax(dim=1)
        j = same_class[int(gaps.argmin())]
        free.remove(j)
        order.append(j)
    return order


def _select(d: Dict[str, torch.Tensor], keep: torch.Tensor) -> Dict[str, torch.Tensor]:
    return {k: v[keep] for k, v in d.items()}


def _differences(eager, exported) -> Dict[str, float]:
    if len(eager["scores"]) != len(exported["scores"]):
        raise ExportVerificationError(
            f"the eager model found {len(eager['scores'])} detections, the exported one {len(exported['scores'])}"
        )
    if len(eager["scores"]) == 0:
        return {key: 0.0 for key in ("boxes", "scores", "masks") if key in eager}
    order = torch.tensor(_pair_detections(eager, exported), dtype=torch.long)
    return {
        key: float((eager[key] - exported[key][order]).abs().max())
        for key in ("boxes", "scores", "masks")
        if key in eager
    }


def max_differences(
    eager: Dict[str, torch.Tensor],
    exported: Dict[str, torch.Tensor],
    score_tolerance: float = TOLERANCES["scores"],
) -> Tuple[Dict[str, float], int]:
    """Largest |difference| per output over paired detections (same class, nearest box), and
    how many detections were compared.

    Detectron2 keeps the top detections by score (``TEST.DETECTIONS_PER_IMAGE``, the score
    threshold): a detection whose score ties the last one kept within ``score_tolerance`` may be
    in one list and not the other. Only when the full lists do not pair up, the comparison is
    restricted to the detections scoring above that cut on both sides. Raises
    ExportVerificationError when the detections themselves differ (count or classes above the
    cut, an output one side lacks)."""
    if set(eager) != set(exported):
        raise ExportVerificationError(
            f"outputs differ: eager has {sorted(eager)}, exported {sorted(exported)}"
        )
    try:
        return _differences(eager, exported), len(eager["scores"])
    except ExportVerificationError as full_lists:
        if not (len(eager["scores"]) and len(exported["scores"])):
            raise
        cut = max(float(eager["scores"].min()), float(exported["scores"].min())) + score_tolerance
        above_e, above_x = _select(eager, eager["scores"] > cut), _select(exported, exported["scores"] > cut)
        try:
            return _differences(above_e, above_x), len(above_e["scores"])
        except ExportVerificationError as e:
            raise ExportVerificationError(
                f"{full_lists}; above the last score kept (+{score_tolerance:g}): {e}"
            ) from e


@dataclass
class VerificationReport:
    """Per-image largest differences and detection counts, and timings, of one artifact."""

    artifact: str
    per_image: List[Dict[str, float]] = field(default_factory=list)
    detections: List[int] = field(default_factory=list)
    compared: List[int] = field(default_factory=list)
    eager_ms: Optional[float] = None
    exported_ms: Optional[float] = None

    def add(self, eager: Dict[str, torch.Tensor], exported: Dict[str, torch.Tensor]) -> None:
        differences, compared = max_differences(eager, exported)
        self.per_image.append(differences)
        self.detections.append(len(eager["scores"]))
        self.compared.append(compared)

    def max(self) -> Dict[str, float]:
        keys = {k for d in self.per_image for k in d}
        return {k: max(d.get(k, 0.0) for d in self.per_image) for k in sorted(keys)}

    def check(self, tolerances: Dict[str, float] = TOLERANCES) -> None:
        """Raise ExportVerificationError naming each output past its tolerance."""
        worst = self.max()
        failed = [f"{k}: {v:.3g} > {tolerances[k]:g}" for k, v in worst.items() if v > tolerances[k]]
        if failed:
            raise ExportVerificationError(
                f"{self.artifact} does not match the eager model: max |difference| " + ", ".join(failed)
            )

    def lines(self) -> List[str]:
        worst = self.max()
        diffs = ", ".join(f"{k} {v:.2e} (tolerance {TOLERANCES[k]:g})" for k, v in worst.items())
        out = [
            f"verified {self.artifact} on {len(self.per_image)} image(s), "
            f"{sum(self.compared)} of {sum(self.detections)} detections compared: max |exported - eager|: {diffs}"
        ]
        if self.eager_ms is not None and self.exported_ms is not None:
            out.append(
                f"time per image on this CPU ({torch.get_num_threads()} threads): eager "
                f"{self.eager_ms:.1f} ms, exported {self.exported_ms:.1f} ms"
            )
        return out


def time_per_image_ms(
    run: Callable[[torch.Tensor], object], images: Sequence[torch.Tensor], repeats: int = 3
) -> float:
    """Median over ``repeats`` of the mean wall time per image of ``run``, after one warm-up
    pass (the first TorchScript/onnxruntime call optimizes the graph)."""
    with torch.no_grad():
        for image in images:
            run(image)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for image in images:
                run(image)
            samples.append((time.perf_counter() - start) * 1000 / len(images))
    return float(np.median(samples))


def load_exported(path: str, fmt: str) -> Callable[[torch.Tensor], List[torch.Tensor]]:
    """A function image -> flat list of output tensors, running a ``torch.export`` program
    (``torch.export.load``), a traced TorchScript file (``torch.jit.load``) or an ONNX file
    (onnxruntime, CPU)."""
    if fmt == "pt2":
        import torchvision  # noqa: F401  registers torchvision::nms and roi_align, which the program calls

        module = torch.export.load(path).module()
        return lambda image: list(module(image))
    if fmt == "torchscript":
        with torchscript_on_purpose():
            module = torch.jit.load(path, map_location="cpu")
        return lambda image: list(module(image))
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError as e:
            raise ImportError("verifying an ONNX export needs onnxruntime: pip install -e .[export]") from e
        options = onnxruntime.SessionOptions()
        # torch's thread count, so that the eager model and the artifact are timed alike
        # (onnxruntime's default is one thread per core)
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda image: [torch.from_numpy(a) for a in session.run(None, {name: image.numpy()})]
    raise ValueError(f"export format {fmt!r}; valid: pt2, torchscript, onnx")
