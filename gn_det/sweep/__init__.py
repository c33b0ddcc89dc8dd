"""The norm x images-per-GPU sweep (``tools/sweep.py``): the GN paper's batch-size comparison
for a detector.

- ``norm_presets``: ``BN*``, ``BN``, ``SyncBN``, ``GN``, ``GN+WS``, ``GN_<N>ch`` -> norm keys.
- ``plan``: cells (norm x images/GPU x seed) and each cell's config (per-GPU batch rule of
  ``gn_det.batch_scaling``: every cell sees the same number of images).
- ``runner``: one directory per cell, resumable; a subprocess per cell by default.
- ``results``: ``sweep.json``, the Markdown table and the AP-vs-images-per-GPU plot.
"""

from .norm_presets import NormPreset, PRESET_NAMES, apply_norm_preset, parse_norm_preset, parse_norm_presets
from .plan import SweepCell, SweepRun, derive_run_config, plan_sweep, run_dir_name
from .results import collect_runs, format_sweep_markdown, plot_sweep, summarize_cells, write_sweep_outputs
from .runner import ConfigChangedError, final_ap_report, is_finished, run_sweep

__all__ = [
    "NormPreset",
    "PRESET_NAMES",
    "apply_norm_preset",
    "parse_norm_preset",
    "parse_norm_presets",
    "SweepCell",
    "SweepRun",
    "derive_run_config",
    "plan_sweep",
    "run_dir_name",
    "collect_runs",
    "format_sweep_markdown",
    "plot_sweep",
    "summarize_cells",
    "write_sweep_outputs",
    "ConfigChangedError",
    "final_ap_report",
    "is_finished",
    "run_sweep",
]
