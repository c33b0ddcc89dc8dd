"""What Detectron2's inference code needs to go through ``torch.export``, applied only while
exporting (as Detectron2's own ``torchscript_patch`` does for scripting).

``torch.export`` records a graph with symbolic sizes and refuses Python control flow that depends
on tensor *values* ("data-dependent": ``bool(tensor)``, ``tensor.item()``, a comparison of a size
that came out of ``nonzero``). ``torch.jit.trace`` evaluates such a branch once, on the traced
image, and bakes the result in; ``torch.export`` raises ``GuardOnDataDependentSymNode`` instead.
Detectron2's inference (pinned commit) needs the seven ``PATCHES``; each names the line, the
error torch.export raises there without it (each measured by leaving it out:
docs/results/2026-12-06_torch_export_patches.json), and what changes while exporting. Nothing here changes
eager behaviour: every replacement calls Detectron2's original unless
``torch.compiler.is_exporting()``, and all are undone when the context exits.

What the exported graph does differently from the eager model (docs/deploy.md):

- non-finite proposals or boxes: eager Detectron2 drops them (``valid_mask``); the exported
  program checks at run time that there are none and raises otherwise (a traced TorchScript model
  keeps them silently: the trace evaluated the check once);
- batched NMS always uses torchvision's offset-per-class form (eager switches to a per-class loop
  past 4,000 box coordinates on CPU); both are exact NMS, they differ in float rounding only.
"""

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Iterator, List, Sequence, Tuple
from unittest import mock

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import detectron2.modeling.meta_arch.retinanet as retinanet
import detectron2.modeling.poolers as poolers
import detectron2.modeling.proposal_generator.proposal_utils as proposal_utils
import detectron2.modeling.proposal_generator.rpn as rpn
import detectron2.modeling.roi_heads.fast_rcnn as fast_rcnn
from detectron2.export.torchscript_patch import patch_builtin_len
from detectron2.structures import Boxes, ImageList

__all__ = ["Patch", "PATCHES", "torch_export_patches"]


@dataclass(frozen=True)
class Patch:
    """One change to Detectron2 while exporting: where (file:line at the pinned commit), what
    ``torch.export`` raises there without it, and what it does instead."""

    name: str
    where: str
    error: str
    change: str
    enter: Callable[[contextlib.ExitStack], None]


class _AssumeTrueAndCheck(TorchFunctionMode):
    # bool(tensor) on a value only known at run time: record a run-time assertion that it is
    # True (torch._check -> aten._assert_scalar in the graph) and take the True branch. Entered
    # only inside the three functions patched below, whose only bool(tensor) calls (pinned
    # commit) are the finiteness checks; the small-box branch's .item() is answered by the
    # tracing-branch patch before it is reached.
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__bool__ and torch.compiler.is_exporting():
            value = args[0].item()
            torch._check(value, lambda: "Detectron2 inference met non-finite boxes or scores")
            return True
        return func(*args, **(kwargs or {}))


def _finite_checks_at_run_time(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if not torch.compiler.is_exporting():
            return function(*args, **kwargs)
        with _AssumeTrueAndCheck():
            return function(*args, **kwargs)

    return wrapper


def _only_while_exporting(replacement, original):
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        return (replacement if torch.compiler.is_exporting() else original)(*args, **kwargs)

    return wrapper


def _pad_one_image(original):
    # ImageList.from_tensors computes the padded size in tensors (so tracing records it) and pads
    # by tensor.item() amounts: every size after it becomes data-dependent. For one image the
    # padded size is a function of the input's (symbolic) size; written with non-negative
    # operands only, because torch.onnx's dynamo exporter turns a floor division of a negative
    # size into ONNX's truncating Div (a 80-pixel side padded to 64, measured).
    def from_tensors(tensors, size_divisibility=0, pad_value=0.0, padding_constraints=None):
        if not torch.compiler.is_exporting() or len(tensors) != 1:
            return original(tensors, size_divisibility, pad_value, padding_constraints)
        image = tensors[0]
        height, width = image.shape[-2:]
        target_h, target_w = height, width
        constraints = padding_constraints or {}
        if constraints.get("square_size", 0) > 0:
            target_h = target_w = constraints["square_size"]
        divisor = constraints.get("size_divisibility", size_divisibility)
        if divisor > 1:
            target_h = (target_h + divisor - 1) // divisor * divisor
            target_w = (target_w + divisor - 1) // divisor * divisor
        padded = F.pad(image, (0, target_w - width, 0, target_h - height), value=pad_value)
        return ImageList(padded.unsqueeze(0), [(height, width)])

    return staticmethod(from_tensors)


def _boxes_init(original):
    # Boxes.__init__ asks `tensor.numel() == 0` to reshape an empty input to (0, 4): on an (N, 4)
    # float32 tensor both branches keep it as it is, but after boolean-mask indexing N is
    # data-dependent and the question cannot be answered while exporting.
    @functools.wraps(original)
    def __init__(self, tensor):
        exporting = torch.compiler.is_exporting() and isinstance(tensor, torch.Tensor)
        if exporting and tensor.dim() == 2 and tensor.shape[-1] == 4 and tensor.dtype == torch.float32:
            self.tensor = tensor
            return
        original(self, tensor)

    return __init__


def _batched_nms(boxes, scores, idxs, iou_threshold):
    # torchvision's batched NMS in its offset-per-class form (each class's boxes shifted past the
    # previous classes'), without torchvision's size branches (`numel() > 4000`, `numel() == 0`),
    # which read a data-dependent size. The largest coordinate is taken with a 0 appended, so that
    # no detections (an empty input at run time) is no error.
    boxes = boxes.float()
    largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (largest + 1)
    return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, iou_threshold)


def _sizes_to_tensor(original):
    # poolers.shapes_to_tensor calls torch.as_tensor on the per-image box counts, which are
    # symbolic (data-dependent) while exporting; torch.full takes a symbolic fill value.
    def shapes_to_tensor(sizes, device=None):
        if not torch.compiler.is_exporting():
            return original(sizes, device)
        return torch.stack([torch.full((), s, dtype=torch.long, device=device) for s in sizes])

    return shapes_to_tensor


def _patch(targets, attribute, make):
    """An ``enter`` that replaces ``target.attribute`` by ``make(original)`` on each target."""
    targets = targets if isinstance(targets, tuple) else (targets,)

    def enter(stack: contextlib.ExitStack) -> None:
        for target in targets:
            stack.enter_context(mock.patch.object(target, attribute, make(getattr(target, attribute))))

    return enter


def _both(*enters):
    def enter(stack: contextlib.ExitStack) -> None:
        for e in enters:
            e(stack)

    return enter


def _len_patch(stack: contextlib.ExitStack) -> None:
    stack.enter_context(
        patch_builtin_len(
            [
                "detectron2.structures.instances",
                "detectron2.modeling.proposal_generator.proposal_utils",
                "detectron2.modeling.poolers",
            ]
        )
    )


PATCHES: Tuple[Patch, ...] = (
    Patch(
        "one-image padding",
        "detectron2/structures/image_list.py:89-122 (ImageList.from_tensors)",
        "UserError: Constraints violated (height, width): its tensor arithmetic on the image size "
        "specializes a symbolic height and width; at a fixed size the padding amounts "
        "(`max_size - image_size`) go through `.item()` and every size after them is data-dependent",
        "for one image, pad to the next multiple of size_divisibility (or square_size) "
        "computed from the input's symbolic size",
        _patch(ImageList, "from_tensors", _pad_one_image),
    ),
    Patch(
        "finite checks",
        "detectron2/modeling/proposal_generator/proposal_utils.py:106 "
        "(`if not valid_mask.all()`), detectron2/modeling/roi_heads/fast_rcnn.py:138 (same), "
        "detectron2/structures/boxes.py:191 (Boxes.clip: `assert torch.isfinite(...).all()`)",
        "GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(u0, 1)",
        "take the all-finite branch and assert it at run time (torch._check)",
        _both(
            _patch(rpn, "find_top_rpn_proposals", _finite_checks_at_run_time),
            _patch(fast_rcnn, "fast_rcnn_inference_single_image", _finite_checks_at_run_time),
            _patch(Boxes, "clip", _finite_checks_at_run_time),
        ),
    ),
    Patch(
        "tracing branch for small boxes",
        "detectron2/modeling/proposal_generator/proposal_utils.py:118 "
        "(`if _is_tracing() or keep.sum().item() != len(boxes)`)",
        "GuardOnDataDependentSymNode: Could not guard on data-dependent expression Ne(u2, 547) "
        "(`keep.sum().item()` against the box count)",
        "`_is_tracing()` answers True while exporting: the branch Detectron2 takes under "
        "torch.jit.trace (always index by `keep`)",
        _patch(proposal_utils, "_is_tracing", lambda f: _only_while_exporting(lambda: True, f)),
    ),
    Patch(
        "Boxes of data-dependent length",
        "detectron2/structures/boxes.py:151 (Boxes.__init__: `if tensor.numel() == 0`)",
        "GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(4*u2, 0)",
        "an (N, 4) float32 tensor is stored as it is (what both branches do with it)",
        _patch(Boxes, "__init__", _boxes_init),
    ),
    Patch(
        "len() of symbolic sizes",
        "detectron2/structures/instances.py:76 (Instances.set: `data_len = len(value)`), and "
        "len() in proposal_utils and poolers",
        "GuardOnDataDependentSymNode: Could not extract specialized integer from data-dependent "
        "expression Min(50, u3)",
        "Detectron2's own patch_builtin_len (len() -> __len__(), which keeps the size symbolic) "
        "on these modules too, beside the three TracingAdapter patches",
        _len_patch,
    ),
    Patch(
        "box counts to tensor",
        "detectron2/modeling/poolers.py:97 (convert_boxes_to_pooler_format -> "
        "shapes_to_tensor -> torch.as_tensor)",
        "GuardOnDataDependentSymNode: Could not extract specialized integer (torch.as_tensor of a "
        "symbolic box count)",
        "torch.full with the symbolic count",
        _patch(poolers, "shapes_to_tensor", _sizes_to_tensor),
    ),
    Patch(
        "batched NMS",
        "torchvision/ops/boxes.py batched_nms (`boxes.numel() > 4000`) and "
        "_batched_nms_coordinate_trick (`boxes.numel() == 0`), called by "
        "detectron2/layers/nms.py:23 (from proposal_utils, fast_rcnn and retinanet)",
        "GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(4*u2, 0) at "
        "torchvision/ops/boxes.py:103 (the number of boxes left by score and size filtering)",
        "torchvision's offset-per-class NMS without the size branches",
        _patch(
            (proposal_utils, fast_rcnn, retinanet), "batched_nms", lambda f: _only_while_exporting(_batched_nms, f)
        ),
    ),
)


@contextlib.contextmanager
def torch_export_patches(skip: Sequence[str] = ()) -> Iterator[List[Patch]]:
    """Apply ``PATCHES`` (less those named in ``skip``, to show what each one is for) while the
    context is open; yields the applied ones."""
    unknown = set(skip) - {p.name for p in PATCHES}
    if unknown:
        raise ValueError(f"unknown patch name(s) {sorted(unknown)}; valid: {[p.name for p in PATCHES]}")
    applied = [p for p in PATCHES if p.name not in skip]
    with contextlib.ExitStack() as stack:
        for patch in applied:
            patch.enter(stack)
        yield applied
