"""Layer-level microbenchmark: GN and GN+ReLU, gn_det's against ``torch.nn.GroupNorm``, on the
tensor shapes that R50-FPN Mask R-CNN really feeds its GN layers.

The shapes are recorded with forward hooks on every ``nn.GroupNorm`` of a GN Mask R-CNN during
one training forward and one inference call on the fixed workload: backbone stages, FPN levels,
box head (7x7, hundreds of RoIs) and mask head (14x14).

Achieved bandwidth counts compulsory traffic only (each input read once, each output written
once): forward reads x and writes y (2 tensors), backward reads x and dy and writes dx (3), so
forward+backward moves 5 x numel x itemsize bytes, forward alone 2 x. It is reported as a
fraction of the copy bandwidth measured on the same device (``dst.copy_(src)``: 2 x size per
copy); 1.0 would be a kernel as fast as a plain copy of the same traffic.
"""
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from detectron2.utils.events import EventStorage
from torch import nn

from gn_det.layers import GNSettings, build_norm_factory

from .measure import BenchmarkedModel, synchronize

__all__ = [
    "GNShape",
    "GNImplementation",
    "default_implementations",
    "collect_gn_shapes",
    "measure_copy_bandwidth",
    "run_layer_benchmark",
]


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


def _module_gn(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _unfused_gn_relu(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.relu(module(x))


@dataclass(frozen=True)
class GNImplementation:
    """A named way to build a GN layer (C channels, G groups; it holds the affine parameters)
    and to run it as GN and as GN followed by ReLU (a fused op can take the module's weight,
    bias, num_groups and eps)."""

    name: str
    build: Callable[[int, int], nn.Module]
    gn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _module_gn
    gn_relu: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _unfused_gn_relu


def default_implementations() -> List[GNImplementation]:
    """torch.nn.GroupNorm (the reference) and GN as gn_det's norm factory builds it."""
    return [
        GNImplementation("torch.nn.GroupNorm", lambda c, g: nn.GroupNorm(g, c)),
        GNImplementation(
            "gn_det", lambda c, g: build_norm_factory("GN", GNSettings(num_groups=g), "benchmark")(c)
        ),
    ]


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


def _time_calls(fn: Callable[[], None], device: torch.device, repeats: int,
                inner: int = 1) -> List[float]:
    """Seconds per call of ``fn``, one sample per repeat, each the mean of ``inner`` calls."""
    out = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        out.append((time.perf_counter() - start) / inner)
    return out


# Small layers take microseconds: a sample repeats the call until it lasts about this long, so
# timer resolution and one-off scheduler hiccups do not dominate.
_MIN_SAMPLE_S = 0.005


def measure_copy_bandwidth(device: torch.device, nbytes: int, repeats: int = 5) -> float:
    """Bytes per second of ``dst.copy_(src)`` on ``nbytes``-sized float32 tensors (read + write)."""
    numel = max(1, nbytes // 4)
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: first touch of the pages
    times = _time_calls(lambda: dst.copy_(src), device, repeats)
    return 2 * numel * 4 / statistics.median(times)


def _time_layer(shape: GNShape, impls: List[GNImplementation], device: torch.device,
                warmup: int, repeats: int) -> Dict[str, Dict[str, List[float]]]:
    """Interleaved timings: {impl: {"gn_fwd", "gn_fwd_bwd", "gn_relu_fwd", "gn_relu_fwd_bwd"}}."""
    channels = shape.shape[1]
    x = torch.randn(shape.shape, device=device, requires_grad=True)
    dy = torch.randn(shape.shape, device=device)
    modules = {impl.name: impl.build(channels, shape.num_groups).to(device) for impl in impls}

    def runner(impl: GNImplementation, with_relu: bool, backward: bool):
        module = modules[impl.name]

        def call():
            if backward:
                x.grad = None
                module.zero_grad(set_to_none=True)
                y = impl.gn_relu(module, x) if with_relu else impl.gn(module, x)
                y.backward(dy)
            else:
                with torch.no_grad():
                    impl.gn_relu(module, x) if with_relu else impl.gn(module, x)
        return call

    cases = {
        "gn_fwd": (False, False),
        "gn_fwd_bwd": (False, True),
        "gn_relu_fwd": (True, False),
        "gn_relu_fwd_bwd": (True, True),
    }
    calls = {(impl.name, case): runner(impl, *flags) for impl in impls for case, flags in cases.items()}
    inner = {}
    for key, call in calls.items():
        once = _time_calls(call, device, 1)[0]  # also the first, allocating call
        inner[key] = max(1, min(100, int(_MIN_SAMPLE_S / max(once, 1e-9))))
    times = {impl.name: {case: [] for case in cases} for impl in impls}
    for rep in range(warmup + repeats):
        # Rotate the order every repeat so no implementation always runs first (cold caches).
        order = impls[rep % len(impls):] + impls[: rep % len(impls)]
        for case in cases:
            for impl in order:
                key = (impl.name, case)
                t = _time_calls(calls[key], device, 1, inner[key])[0]
                if rep >= warmup:
                    times[impl.name][case].append(t)
    return times


def run_layer_benchmark(shapes: List[GNShape], device: torch.device, warmup: int = 1,
                        repeats: int = 5, copy_bytes: int = 256 * 1024 ** 2,
                        implementations: List[GNImplementation] = None, log=print) -> Dict:
    """Time every shape with every implementation; return the JSON-ready ``layers`` section.

    Per shape and implementation: median/min/max seconds of GN and GN+ReLU, forward and
    forward+backward, achieved GB/s and fraction of copy bandwidth (medians), and the ratio to
    the first implementation (the reference, ``torch.nn.GroupNorm``).
    """
    impls = implementations or default_implementations()
    reference = impls[0].name
    copy_bw = measure_copy_bandwidth(device, copy_bytes)
    rows = []
    for shape in shapes:
        log(f"  layer {list(shape.shape)} G={shape.num_groups} ({', '.join(shape.where)})")
        times = _time_layer(shape, impls, device, warmup, repeats)
        itemsize = 4
        per_impl = {}
        for impl in impls:
            entry = {}
            for case, samples in times[impl.name].items():
                med = statistics.median(samples)
                traffic = (5 if case.endswith("bwd") else 2) * shape.numel * itemsize
                entry[case] = {
                    "median_s": med,
                    "min_s": min(samples),
                    "max_s": max(samples),
                    "gb_per_s": traffic / med / 1e9,
                    "fraction_of_copy_bandwidth": traffic / med / copy_bw,
                    "ratio_to_reference": med / statistics.median(times[reference][case]),
                }
            per_impl[impl.name] = entry
        rows.append({
            "shape": list(shape.shape),
            "num_groups": shape.num_groups,
            "where": list(shape.where),
            "calls_per_step": shape.calls,
            "results": per_impl,
        })
    return {
        "device": str(device),
        "dtype": "float32",
        "copy_bandwidth_gb_per_s": copy_bw / 1e9,
        "copy_bytes": copy_bytes,
        "reference": reference,
        "implementations": [impl.name for impl in impls],
        "traffic_model": "compulsory: forward 2x, forward+backward 5x numel*itemsize",
        "warmup": warmup,
        "repeats": repeats,
        "shapes": rows,
    }
