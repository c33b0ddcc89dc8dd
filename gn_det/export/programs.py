"""Export on torch's current path: ``torch.export`` (an ``ExportedProgram`` saved as ``.pt2``)
and ONNX through the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``).

The exported module is the same as for tracing: Detectron2's ``TracingAdapter`` around
``standard_model(model)`` (image tensor in, flat tuple of tensors out; the adapter's
``outputs_schema`` reads them back as ``Instances``). ``torch.export`` runs it in non-strict
mode with ``export_patches.torch_export_patches()`` open, which lets Detectron2's R-CNN
inference through (see that module for what each patch is for). The image height and width are
symbolic (``torch.export.Dim``), so one program serves every image size from ``min_image_side``
up; a smaller side is refused by the program's own input check.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from .export_patches import torch_export_patches
from .exporters import tracing_adapter
from .standard_modules import standard_model

__all__ = ["min_image_side", "export_program", "export_pt2", "export_onnx_dynamo"]


def min_image_side(model: nn.Module) -> int:
    """The smallest image side a program with symbolic sizes accepts: one more than the
    backbone's largest stride, so that every feature map is at least 2 wide. (At 1, torch.export
    specializes: a size-1 dimension broadcasts, a larger one does not, and the program would be
    valid for one of the two only.)"""
    strides = [shape.stride for shape in model.backbone.output_shape().values()]
    return max(strides) + 1


def _dynamic_shapes(model: nn.Module, image: Tensor):
    low = min_image_side(model)
    if min(image.shape[1:]) < low:
        raise ValueError(
            f"the sample image is {tuple(image.shape[1:])}; a program for every image size needs "
            f"a sample image of at least {low}x{low} pixels (the backbone's largest stride + 1)"
        )
    # TracingAdapter.forward(*args): one positional argument, the (3, H, W) image.
    return (({1: Dim("height", min=low), 2: Dim("width", min=low)},),)


def export_program(
    model: nn.Module, image: Tensor, dynamic: bool = True
) -> Tuple[ExportedProgram, "torch.nn.Module"]:
    """``torch.export.export`` of ``standard_model(model)`` behind Detectron2's
    ``TracingAdapter``, with ``image`` (3, H, W) as the sample input. Returns the program and the
    adapter (its ``outputs_schema`` reads the program's outputs)."""
    adapter = tracing_adapter(standard_model(model), image).eval()
    with torch.no_grad():
        adapter(image)  # records outputs_schema from a real run
        with torch_export_patches():
            program = torch.export.export(
                adapter,
                (image,),
                dynamic_shapes=_dynamic_shapes(model, image) if dynamic else None,
                strict=False,
            )
    return program, adapter


def export_pt2(model: nn.Module, image: Tensor, path: str, dynamic: bool = True):
    """Export (``export_program``) and save with ``torch.export.save`` to ``path`` (``.pt2``).
    Returns ``(program, adapter)``."""
    program, adapter = export_program(model, image, dynamic)
    torch.export.save(program, path)
    return program, adapter


def export_onnx_dynamo(
    model: nn.Module,
    image: Tensor,
    path: str,
    opset: Optional[int] = None,
    program: Optional[ExportedProgram] = None,
    dynamic: bool = True,
):
    """ONNX through ``torch.onnx.export(..., dynamo=True)`` from the ``torch.export`` program
    (``program`` if given, else exported here). ``opset`` None: torch's default for this
    exporter. Returns ``(program, adapter or None)``."""
    adapter = None
    if program is None:
        program, adapter = export_program(model, image, dynamic)
    torch.onnx.export(
        program,
        (image,),
        path,
        dynamo=True,
        opset_version=opset,
        input_names=["image"],
        external_data=False,
        verbose=False,
    )
    return program, adapter
