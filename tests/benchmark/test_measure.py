"""Timing statistics and peak-memory measurement of the model benchmark."""
import mmap

import pytest
from detectron2.modeling import build_model

from gn_det.benchmark import BenchmarkSettings, WorkloadSpec, build_variant_cfg, make_workload, measure_peak_memory, summarize
from gn_det.benchmark.measure import run_memory_measurement
from gn_det.benchmark.runner import _measure_memory
from gn_det.benchmark.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss

SPEC = WorkloadSpec(height=128, width=192, images_per_batch=1, instances_per_image=3,
                    proposals_per_image=96, rois_per_image=32, detections_per_image=8)
MIB = 1024 ** 2


def test_summarize_gives_median_min_max():
    assert summarize([3.0, 1.0, 2.0, 10.0]) == {
        "median": 2.5, "min": 1.0, "max": 10.0, "samples": [3.0, 1.0, 2.0, 10.0]}


def test_summarize_refuses_no_samples():
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])


def test_peak_rss_sees_a_freed_allocation_after_reset():
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak RSS")
    before = current_rss_bytes()
    block = mmap.mmap(-1, 64 * MIB)  # fresh pages, whatever the allocators have cached
    for offset in range(0, 64 * MIB, 4096):
        block[offset] = 1  # touched, so resident
    block.close()
    assert current_rss_bytes() - before < 32 * MIB
    assert peak_rss_bytes() - before >= 60 * MIB


def test_peak_memory_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'train' or 'inference', got 'eval'"):
        measure_peak_memory(build_variant_cfg("a", SPEC), make_workload(SPEC), "eval", 1)


def test_fresh_process_memory_covers_the_weights_and_training_costs_more():
    # Through the runner's memory phase: one fresh process per (row, variant, mode).
    settings = BenchmarkSettings.for_device(
        "cpu", quick=True, variants=("a",), image_sizes=((128, 192),), images_per_batch=(1,),
        main_images_per_batch=1, layers=False)
    [(freeze_at, spec)] = settings.rows()
    assert spec == SPEC and freeze_at == 2
    weights = sum(p.numel() * 4 for p in build_model(build_variant_cfg("a", SPEC)).parameters())
    memory = _measure_memory(settings, settings.rows(), log=lambda m: None)[0]["a"]
    infer = memory["inference_peak_memory_mib"]["median"] * MIB
    train = memory["train_peak_memory_mib"]["median"] * MIB
    assert infer >= weights
    # Training keeps gradients and momentum for the trainable weights on top of the weights.
    assert train > infer + weights // 2
    assert memory["memory_method"].startswith("VmHWM")


def test_failed_measurement_reports_the_child_error():
    with pytest.raises(RuntimeError, match=r"(?s)variant \(e\) train .*Unknown benchmark variant 'e'"):
        run_memory_measurement("e", SPEC, "train", "cpu", steps=1, seed=0, threads=1)
