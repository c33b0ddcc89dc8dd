"""Export through Detectron2's own TorchScript paths: ``TracingAdapter`` + ``torch.jit.trace`` or
the TorchScript-based ``torch.onnx.export`` (``dynamo=False``), and ``scripting_with_instances``
(as Detectron2's ``tools/deploy/export_model.py`` does). torch 2.13 deprecates TorchScript; the
default export is ``torch.export`` (``programs``), these stay for deployments that load
TorchScript (LibTorch) or need Detectron2's opset 11 ONNX.

Each function exports ``standard_model(model)`` (WS folded, plain convs, no scopes) and writes
one file. (Detectron2's paths also work on the model as trained: its fused convs record
PyTorch's own ``group_norm`` under tracing, but a WS model then recomputes WS in the graph.)
"""

import contextlib
import warnings
from typing import Dict, Iterator, List, Tuple

import torch
from detectron2.export import STABLE_ONNX_OPSET_VERSION, TracingAdapter, scripting_with_instances
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes
from torch import Tensor, nn

from .standard_modules import standard_model

__all__ = [
    "FORMATS",
    "EXPORT_METHODS",
    "TORCHSCRIPT_DEPRECATIONS",
    "torchscript_on_purpose",
    "ONNX_OPSETS",
    "DEFAULT_ONNX_OPSET",
    "tracing_adapter",
    "export_tracing",
    "export_scripting",
]

FORMATS = ("pt2", "onnx", "torchscript")
# "export": torch.export (.pt2; ONNX through torch.onnx's dynamo exporter), in ``programs``.
EXPORT_METHODS = ("export", "tracing", "scripting")
# Detectron2's deploy docs and tests use opset 11 (STABLE_ONNX_OPSET_VERSION). ONNX RoiAlign has
# Detectron2's aligned (half-pixel) sampling only from opset 16 on: at 11, torch exports
# ROIAlignV2 as the unaligned op (with a warning), so R-CNN boxes and masks move; RetinaNet has no
# RoIAlign and matches at 11. The default is a current opset that is right for every model.
DEFAULT_ONNX_OPSET = 17
ONNX_OPSETS = (STABLE_ONNX_OPSET_VERSION, 16, 17)

# What torch 2.13 says when TorchScript is used (message regexes, as warnings filters take them).
TORCHSCRIPT_DEPRECATIONS = (
    r"`torch\.jit\.(script|trace|trace_method|save|load)` is deprecated",
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed\. Please remove usage of this function",  # torch.onnx's own logging set-up
)


@contextlib.contextmanager
def torchscript_on_purpose() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warnings around gn_det's own TorchScript calls, made
    because the caller asked for TorchScript or the legacy ONNX exporter by name (the export tool
    says once that torch deprecates it; its default is torch.export). Not a third-party warning:
    the calls are gn_det's, so this is not in gn_det.third_party_warnings."""
    with warnings.catch_warnings():
        for message in TORCHSCRIPT_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        yield


# The Instances fields a scripted model may produce (Detectron2's export_model.py list).
_SCRIPTED_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


def _rcnn_inference(model, inputs):
    # do_postprocess=False: boxes in the network's input resolution and the RoI mask
    # probabilities (R, 1, M, M), which a deployment pastes into the image itself.
    instances = model.inference(inputs, do_postprocess=False)[0]
    return [{"instances": instances}]


def tracing_adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    """Detectron2's ``TracingAdapter`` for ``model`` on one (3, H, W) image: the adapter's
    forward takes the image tensor and returns a flat tuple of tensors; its
    ``outputs_schema`` turns such a tuple back into ``[{"instances": Instances}]``."""
    inference = _rcnn_inference if isinstance(model, GeneralizedRCNN) else None
    return TracingAdapter(model, [{"image": image}], inference)


def export_tracing(
    model: nn.Module, image: Tensor, path: str, fmt: str = "torchscript", opset: int = DEFAULT_ONNX_OPSET
) -> TracingAdapter:
    """Trace ``standard_model(model)`` on ``image`` and write TorchScript (``torch.jit.save``)
    or ONNX to ``path``. Returns the adapter (its ``outputs_schema`` reads the artifact's
    outputs)."""
    if fmt not in ("torchscript", "onnx"):
        raise ValueError(f"tracing writes torchscript or onnx, not {fmt!r} (pt2: gn_det.export.programs)")
    adapter = tracing_adapter(standard_model(model), image).eval()
    # Detectron2's box and RoI code raises TracerWarnings by design (it was written for
    # tracing); what the trace does is checked by running it (gn_det.export.verify).
    with torch.no_grad(), torchscript_on_purpose(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if fmt == "torchscript":
            # check_trace re-runs the model to compare; gn_det.export.verify does that on
            # every sample image, against the eager model as trained, with stated tolerances.
            traced = torch.jit.trace(adapter, (image,), check_trace=False)
            torch.jit.save(traced, path)
        else:
            # The TorchScript-based exporter (dynamo=False) is the one Detectron2's adapters
            # are written for: its RoIAlign/NMS become ONNX RoiAlign/NonMaxSuppression.
            torch.onnx.export(
                adapter,
                (image,),
                path,
                opset_version=opset,
                dynamo=False,
                input_names=["image"],
                training=torch.onnx.TrainingMode.EVAL,
            )
    return adapter


class _ScriptableRCNN(nn.Module):
    # Returns dicts, not Instances: a scripted module returning Instances cannot be loaded in
    # another process (pytorch/pytorch#46944; Detectron2's export_model.py does the same).
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs: Tuple[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


class _ScriptableDetector(_ScriptableRCNN):
    def forward(self, inputs: Tuple[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model(inputs)
        return [i.get_fields() for i in instances]


def export_scripting(model: nn.Module, path: str) -> torch.jit.ScriptModule:
    """Script ``standard_model(model)`` with Detectron2's ``scripting_with_instances`` and save it to ``path``.

    The saved module takes a tuple of ``{"image": (3, H, W) tensor}`` dicts and returns one dict
    of fields per image (``pred_boxes`` as an (R, 4) tensor, ``scores``, ``pred_classes`` and,
    for Mask R-CNN, ``pred_masks``), without the final resize to the original image size.
    """
    model = standard_model(model)
    adapter = _ScriptableRCNN(model) if isinstance(model, GeneralizedRCNN) else _ScriptableDetector(model)
    with torchscript_on_purpose():
        scripted = scripting_with_instances(adapter.eval(), _SCRIPTED_FIELDS)
        torch.jit.save(scripted, path)
    return scripted
