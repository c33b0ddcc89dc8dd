"""Deployment: export a gn_det model with ``torch.export`` (a ``.pt2`` program, or ONNX through
torch.onnx's ``torch.export``-based exporter), or to TorchScript / TorchScript-based ONNX through
Detectron2's own paths, and check the artifact against the eager model.

- ``standard_modules``: the model that is exported (WS folded into plain conv weights, fused
  GN+ReLU back to ``nn.GroupNorm``, recompute scopes removed): standard ops only.
- ``model_checks``: a model whose class count is not its config's is refused.
- ``programs``: ``torch.export`` of ``TracingAdapter(standard_model(model))`` with symbolic image
  size, saved as ``.pt2`` or converted to ONNX (``dynamo=True``); the default.
- ``export_patches``: what Detectron2's inference needs to pass ``torch.export`` (each patch names
  the Detectron2 line and the error), applied only while exporting.
- ``exporters``: ``TracingAdapter`` + ``torch.jit.trace`` / ``torch.onnx.export(dynamo=False)``,
  and ``scripting_with_instances`` (TorchScript, deprecated by torch, kept for LibTorch users).
- ``verify``: run the artifact (``torch.export.load``, TorchScript, onnxruntime) and the eager
  model, compare, time.
- ``cli``: ``tools/export_model.py``.

Tracing and export also work on a gn_det model as trained: under ``torch.jit.trace``,
``torch.onnx.export`` and ``torch.export`` its fused convs record PyTorch's ``group_norm``.
"""

from .exporters import (
    DEFAULT_ONNX_OPSET,
    EXPORT_METHODS,
    FORMATS,
    ONNX_OPSETS,
    export_scripting,
    export_tracing,
    torchscript_on_purpose,
    tracing_adapter,
)
from .export_patches import PATCHES, torch_export_patches
from .model_checks import ModelConfigMismatchError, check_model_matches_config, class_counts
from .programs import export_onnx_dynamo, export_program, export_pt2, min_image_side
from .standard_modules import fold_weight_standardization, standard_model
from .verify import (
    TOLERANCES,
    ExportVerificationError,
    VerificationReport,
    detections_of,
    load_exported,
    max_differences,
    scripted_detections,
)

__all__ = [
    "DEFAULT_ONNX_OPSET",
    "EXPORT_METHODS",
    "FORMATS",
    "ONNX_OPSETS",
    "export_scripting",
    "export_tracing",
    "torchscript_on_purpose",
    "tracing_adapter",
    "PATCHES",
    "torch_export_patches",
    "export_onnx_dynamo",
    "export_program",
    "export_pt2",
    "min_image_side",
    "ModelConfigMismatchError",
    "check_model_matches_config",
    "class_counts",
    "fold_weight_standardization",
    "standard_model",
    "TOLERANCES",
    "ExportVerificationError",
    "VerificationReport",
    "detections_of",
    "load_exported",
    "max_differences",
    "scripted_detections",
]
