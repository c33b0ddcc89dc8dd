"""The benchmark's one memory meter: peak growth and marks, and its fresh-process runner."""
import mmap

import pytest

from gn_det.benchmark.memory import PeakMemory, measure_in_fresh_process, reset_peak_rss

MIB = 1024 ** 2


def test_meter_sees_a_block_freed_before_the_result_and_marks_what_is_in_use():
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow resetting the peak RSS")
    meter = PeakMemory("cpu")
    meter.start()
    block = mmap.mmap(-1, 64 * MIB)  # fresh pages, whatever the allocators have cached
    for offset in range(0, 64 * MIB, 4096):
        block[offset] = 1
    meter.mark("while held")
    block.close()
    result = meter.result()
    assert result["marks_bytes"]["while held"] >= 60 * MIB
    assert result["peak_growth_bytes"] >= 60 * MIB
    assert result["method"] == "VmHWM after clear_refs"


def test_result_before_start_is_refused():
    with pytest.raises(RuntimeError, match="before start"):
        PeakMemory("cpu").result()


def test_a_bad_target_fails_before_any_process_starts():
    with pytest.raises(ValueError, match="'package.module:function', got 'gn_det.benchmark.measure'"):
        measure_in_fresh_process("gn_det.benchmark.measure", {})
    with pytest.raises(AttributeError, match="no_such_target"):
        measure_in_fresh_process("gn_det.benchmark.measure:no_such_target", {})
