"""Deployment: export a gn_det model to TorchScript or ONNX through Detectron2's own paths and
check the artifact against the eager model.

- ``standard_modules``: the model that is exported (WS folded into plain conv weights, fused
  GN+ReLU back to ``nn.GroupNorm``, recompute scopes removed): standard ops only.
- ``model_checks``: a model whose class count is not its config's is refused.
- ``exporters``: ``TracingAdapter`` + ``torch.jit.trace`` / ``torch.onnx.export``, and
  ``scripting_with_instances``.
- ``verify``: run the artifact (TorchScript, onnxruntime) and the eager model, compare, time.
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
    tracing_adapter,
)
from .model_checks import ModelConfigMismatchError, check_model_matches_config, class_counts
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
    "tracing_adapter",
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
