"""The one list of known-harmless warnings that third-party code (Detectron2, pycocotools, torch)
prints under the pinned versions, and the one place that silences them.

Each entry names the code that warns and why it is harmless here. The test suite adds these
to pytest's filters (tests/conftest.py); gn_det's tools install them in every process they run
(``gn_det.engine.setup``). Plain ``import gn_det`` changes no warning filter of the caller's.
A warning from gn_det's own code is never listed here: it is fixed instead.
"""
import logging
import warnings
from typing import List, Tuple

__all__ = [
    "THIRD_PARTY_WARNINGS", "THIRD_PARTY_LOG_WARNINGS", "ignore_third_party_warnings", "pytest_filter_lines",
]

# (category, start of the message (a regex, as warnings.filterwarnings takes it; no ":", which
# pytest's filter lines use as a separator), who and why)
THIRD_PARTY_WARNINGS: List[Tuple[type, str, str]] = [
    (FutureWarning, r"`broadcast_buffers` is deprecated",
     "Detectron2's create_ddp_model passes broadcast_buffers=False to DDP, deprecated in torch 2.13"),
    (UserWarning, r"The given NumPy array is not writable",
     "Detectron2's annotations_to_instances wraps pycocotools' read-only decoded masks; "
     "the tensor is only read"),
    (UserWarning, r"torch\.meshgrid. in an upcoming release, it will be required to pass the indexing",
     "Detectron2's anchor generator calls torch.meshgrid without indexing (its 'ij' default)"),
    (DeprecationWarning, r"__array__ implementation doesn't accept a copy keyword",
     "pycocotools' mask.decode/encode and Detectron2's COCOEvaluator under numpy 2"),
    (DeprecationWarning, r"The 'warn' method is deprecated",
     "Detectron2's COCOEvaluator logs 'No predictions from the model!' with Logger.warn"),
    (DeprecationWarning, r"`torch\.jit\.script` is deprecated",
     "Detectron2 scripts some of its layers at import (detectron2/layers/batch_norm.py) and its "
     "script_if_tracing helpers while tracing. gn_det's own TorchScript calls, made only when "
     "TorchScript is asked for by name, are handled in gn_det.export.torchscript_on_purpose"),
    (UserWarning, r"pkg_resources is deprecated",
     "detectron2.model_zoo imports pkg_resources (hence setuptools<81)"),
    (FutureWarning, r"`create_unbacked_symint` is deprecated",
     "torchvision's fake kernel for torchvision::nms (torchvision/_meta_registrations.py), which "
     "torch.export runs to size NMS's output"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated",
     "torch.onnx's dynamo exporter copies torch.export's pytree specs while it decomposes the "
     "program (torch-internal)"),
    (UserWarning, r"Exporting aten..index operator of advanced indexing in opset",
     "torch.onnx, for Detectron2's box/mask indexing; tools/export_model.py verifies the "
     "onnxruntime outputs against the eager model, so a wrong graph fails loudly there"),
]


# Warnings that arrive as log records instead: (logger, start of the message, who and why).
THIRD_PARTY_LOG_WARNINGS: List[Tuple[str, str, str]] = [
    ("torch.fx._symbolic_trace", "is_fx_tracing will return true for both",
     "Detectron2's ROIPooler asks torch.fx's is_fx_tracing(), which torch 2.13 logs about once"),
    ("torch._export.serde.serialize", "Symbol %s did not appear in the graph that was deserialized",
     "torch.export.load of a program with data-dependent sizes (Detectron2's NMS and score "
     "filtering): torch saved value ranges of intermediate symbols that no graph input or output "
     "carries; the program runs the same (gn_det.export.verify compares it with the eager model)"),
]


class _DropListedLogRecords(logging.Filter):
    def __init__(self, prefixes):
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def ignore_third_party_warnings() -> None:
    """Silence the listed warnings and log records in this process (idempotent)."""
    for category, message, _why in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, prefix, _why in THIRD_PARTY_LOG_WARNINGS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropListedLogRecords) for f in logger.filters):
            logger.addFilter(_DropListedLogRecords(
                [p for n, p, _ in THIRD_PARTY_LOG_WARNINGS if n == name]))


def pytest_filter_lines() -> List[str]:
    """The same list as pytest ``filterwarnings`` lines (``ignore:message:Category``)."""
    return [f"ignore:{message}:{category.__name__}" for category, message, _why in THIRD_PARTY_WARNINGS]
