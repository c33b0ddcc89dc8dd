"""The benchmark's one timing helper: warm-up, interleaving, the after hook, same-repeat ratios."""
import time

import pytest

from gn_det.benchmark.timing import clock, interleaved, paired_ratio


def test_interleaved_discards_the_warmup_and_rotates_the_order():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    samples = interleaved(fns, repeats=2, warmup=1)
    assert calls == list("abc" "bca" "cab")
    assert {name: len(s) for name, s in samples.items()} == {"a": 2, "b": 2, "c": 2}


def test_after_hook_runs_outside_the_timed_span():
    seen = []

    def after(name, rep, seconds):
        seen.append((name, rep))
        time.sleep(0.05)

    samples = interleaved({"x": lambda: None}, repeats=2, warmup=1, after=after)
    assert seen == [("x", 0), ("x", 1), ("x", 2)]
    assert max(samples["x"]) < 0.05


def test_process_timer_does_not_count_sleeping():
    samples = interleaved({"sleep": lambda: time.sleep(0.05)}, repeats=1, warmup=0, timer="process")
    assert samples["sleep"][0] < 0.04
    wall = interleaved({"sleep": lambda: time.sleep(0.05)}, repeats=1, warmup=0, timer="wall")
    assert wall["sleep"][0] >= 0.05


def test_paired_ratio_cancels_a_drift_of_the_machine():
    assert paired_ratio([1.0, 2.0, 4.0], [0.5, 1.0, 2.0]) == 2.0
    assert paired_ratio([1.0, 2.0], [1.0]) is None
    assert paired_ratio([1.0], [0.0]) is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="repeats >= 1 and warmup >= 0, got 0, 1"):
        interleaved({"x": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="timer='cpu'; valid: auto, wall, process"):
        clock("cpu")
