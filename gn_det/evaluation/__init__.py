"""COCO box/mask AP: the evaluator (and which code computes it), ``ap_report.json`` + Markdown,
and comparing runs."""
from .ap_report import (
    REPORT_FORMAT,
    build_ap_report,
    format_ap_report_markdown,
    load_ap_report,
    run_info_from_config,
    write_ap_report,
)
from .coco_eval_impl import DEFAULT_IMPLEMENTATION, IMPLEMENTATIONS, evaluate_predictions
from .coco_evaluator import SUMMARY_METRICS, COCOAPEvaluator, evaluator_settings_from_config, tasks_from_config
from .fast_cocoeval import FastCOCOeval
from .compare import common_dataset, comparison_markdown, load_runs, plot_comparison

__all__ = [
    "REPORT_FORMAT",
    "build_ap_report",
    "format_ap_report_markdown",
    "load_ap_report",
    "run_info_from_config",
    "write_ap_report",
    "SUMMARY_METRICS",
    "COCOAPEvaluator",
    "evaluator_settings_from_config",
    "tasks_from_config",
    "IMPLEMENTATIONS",
    "DEFAULT_IMPLEMENTATION",
    "evaluate_predictions",
    "FastCOCOeval",
    "common_dataset",
    "comparison_markdown",
    "load_runs",
    "plot_comparison",
]
