"""gn_det's benchmark harness; ``tools/benchmark.py`` is its one command line.

``model``: the cost of GN in Mask R-CNN R50-FPN. Variants (a) BN*, (b) Detectron2's GN, (c)
gn_det's GN and (d) gn_det's GN+WS run the same architecture on the same fixed, seeded workload,
interleaved; the result is a JSON dict and Markdown tables with every variant's ratio to (a)
and (c)'s ratio to (b). ``layers``: GN+ReLU layers fused vs ``nn.GroupNorm`` (``layer_timing``).
``validation``: what validation and safe checkpoints cost (``validation_cost``). All three time
with ``timing`` and measure memory with ``memory`` (fresh processes). Importing this package
registers ``FixedProposalsRPN`` and ``FixedDetectionsROIHeads`` (benchmark-only stand-ins that
fix the RoI workload).
"""
from .fixed_workload import FixedDetectionsROIHeads, FixedProposalsRPN, set_fixed_workload
from .layer_bench import GNShape, collect_gn_shapes, run_layer_benchmark
from .measure import BenchmarkedModel, measure_peak_memory, run_memory_measurement
from .memory import PeakMemory, measure_in_fresh_process
from .report import format_markdown, read_json, write_json
from .runner import METRICS, SCHEMA, BenchmarkSettings, compute_ratios, refresh_ratios, run_benchmark
from .timing import interleaved, paired_ratio, summarize, timed
from .variants import VARIANTS, Variant, build_variant_cfg
from .workload import Workload, WorkloadSpec, make_workload

__all__ = [
    "BenchmarkSettings",
    "run_benchmark",
    "compute_ratios",
    "refresh_ratios",
    "format_markdown",
    "write_json",
    "read_json",
    "METRICS",
    "SCHEMA",
    "VARIANTS",
    "Variant",
    "build_variant_cfg",
    "WorkloadSpec",
    "Workload",
    "make_workload",
    "FixedProposalsRPN",
    "FixedDetectionsROIHeads",
    "set_fixed_workload",
    "BenchmarkedModel",
    "measure_peak_memory",
    "run_memory_measurement",
    "PeakMemory",
    "measure_in_fresh_process",
    "summarize",
    "interleaved",
    "paired_ratio",
    "timed",
    "GNShape",
    "collect_gn_shapes",
    "run_layer_benchmark",
]
