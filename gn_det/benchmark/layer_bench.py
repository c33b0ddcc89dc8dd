"""Layer-level section: GN+ReLU, gn_det's fused op against ``torch.nn.GroupNorm``, on the tensor
shapes that R50-FPN Mask R-CNN really feeds its GN layers.

The shapes are recorded here, with forward hooks on every ``nn.GroupNorm`` of a GN Mask R-CNN
(Detectron2's, variant b) during one training forward and one inference call on the fixed
workload: stem, res2-res5, FPN levels, box head (7x7, hundreds of RoIs), mask head (14x14).
The timing is gn_det's one layer microbenchmark, ``gn_det.benchmark.layer_timing.
benchmark_group_norm``; its bandwidth counts the fused op's traffic floor (forward: read x for
the statistics, read x and write y; training: that, the recompute of y for the next layer, and
backward's reads of dy and x twice and write of dx), as a fraction of the copy bandwidth it
measures on the same tensor size.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from detectron2.utils.events import EventStorage
from torch import nn

from gn_det.benchmark.layer_timing import benchmark_group_norm

from .measure import BenchmarkedModel

__all__ = ["GNShape", "collect_gn_shapes", "run_layer_benchmark"]


@dataclass(frozen=True)
class GNShape:
    """One GN input shape (N, C, H, W) with its group count, where it occurs and how often."""

    shape: Tuple[int, ...]
    num_groups: int
    where: Tuple[str, ...]
    calls: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _component(module_name: str) -> str:
    """'backbone.bottom_up.res3.1.conv2.norm' -> 'res3'; 'backbone.fpn_lateral4.norm' -> 'fpn'."""
    parts = module_name.split(".")
    if "bottom_up" in parts and parts.index("bottom_up") + 1 < len(parts):
        return parts[parts.index("bottom_up") + 1]
    for part in parts:
        if part.startswith("fpn"):
            return "fpn"
        if part.endswith("_head"):
            return part
    return ".".join(p for p in parts if p != "norm")


def collect_gn_shapes(bench: BenchmarkedModel) -> List[GNShape]:
    """Record every GN call of one training forward and one inference call of ``bench``'s model
    on its workload; group identical (shape, groups). Order: first occurrence."""
    records: List[Tuple[str, Tuple[int, ...], int]] = []
    phase = {"now": "train"}

    def hook(name):
        def record(module, inputs):
            records.append((f"{_component(name)} ({phase['now']})", tuple(inputs[0].shape),
                            module.num_groups))
        return record

    handles = [
        m.register_forward_pre_hook(hook(name))
        for name, m in bench.model.named_modules()
        if isinstance(m, nn.GroupNorm)
    ]
    if not handles:
        raise ValueError("collect_gn_shapes needs a model with GroupNorm layers (variant b, c or d).")
    try:
        bench.model.train()
        with EventStorage(0), torch.no_grad():
            bench.model(bench.inputs)
        phase["now"] = "inference"
        bench.inference_batch()
    finally:
        for h in handles:
            h.remove()

    grouped: "OrderedDict[Tuple, Dict]" = OrderedDict()
    for where, shape, groups in records:
        entry = grouped.setdefault((shape, groups), {"where": [], "calls": 0})
        entry["calls"] += 1
        if where not in entry["where"]:
            entry["where"].append(where)
    return [GNShape(shape, g, tuple(e["where"]), e["calls"]) for (shape, g), e in grouped.items()]


def run_layer_benchmark(shapes: List[GNShape], device: torch.device, repeats: int = 5,
                        log=print) -> Dict:
    """Time every recorded shape with ``gn_det.benchmark.layer_timing.benchmark_group_norm``
    (GN+ReLU: ``torch.nn.GroupNorm`` then ReLU against gn_det's fused op, forward without grad
    and forward+backward, round-robin; process CPU time on CPU, synchronized wall time on GPU).

    Returns the JSON-ready ``layers`` section: per shape, that function's row (milliseconds,
    speedups = torch / fused, the fused op's GB/s at its traffic floor, copy GB/s on the same
    size) plus the fused and torch fractions of the copy bandwidth (same bytes for both) and,
    over all shapes, the sum of time x calls.
    """
    rows = []
    totals = {"torch_infer_ms": 0.0, "fused_infer_ms": 0.0, "torch_train_ms": 0.0, "fused_train_ms": 0.0}
    for shape in shapes:
        log(f"  layer {list(shape.shape)} G={shape.num_groups} ({', '.join(shape.where)})")
        name = ", ".join(shape.where)
        (row,) = benchmark_group_norm([(name, shape.shape, shape.num_groups)], device, repeats=repeats)
        row = dict(row)
        row["shape"] = list(row["shape"])
        row["where"] = list(shape.where)
        row["calls_per_step"] = shape.calls
        for phase in ("infer", "train"):
            fused_fraction = row[f"fused_{phase}_gbps"] / row["copy_gbps"]
            row[f"fused_{phase}_fraction_of_copy"] = fused_fraction
            # Same bytes, the torch path's time: how far the unfused pair is from that floor.
            row[f"torch_{phase}_fraction_of_copy"] = (
                fused_fraction * row[f"fused_{phase}_ms"] / row[f"torch_{phase}_ms"])
        for key in totals:
            totals[key] += row[key] * shape.calls
        rows.append(row)
    return {
        "device": str(device),
        "dtype": "float32",
        "function": "gn_det.benchmark.layer_timing.benchmark_group_norm",
        "op": "GN+ReLU",
        "reference": "torch.nn.GroupNorm + F.relu",
        "candidate": "gn_det.layers.group_norm_act (fused; train includes the recompute for the next layer)",
        "repeats": repeats,
        "shapes": rows,
        "totals_ms": totals,
    }
