"""The benchmark's one timing helper: warm-up, repeats, interleaving, median/min/max, and the
same-repeat ratios, for every sub-command of ``tools/benchmark.py``.

Each sample is one call between two readings of a clock, with ``torch.cuda.synchronize`` on both
sides on a GPU so queued kernels are counted. Several functions are timed interleaved: every
repeat calls each once, in an order rotated every repeat, so a slow drift of the machine's load
touches all of them alike and every function takes every position equally often.
"""
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "TIMERS",
    "synchronize",
    "clock",
    "timed",
    "timed_wall_and_cpu",
    "interleaved",
    "rotated",
    "summarize",
    "paired_ratio",
]

TIMERS = ("auto", "wall", "process")


def synchronize(device: Optional[torch.device]) -> None:
    """Wait for queued GPU work; nothing to wait for on CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def clock(timer: str = "wall", device: Optional[torch.device] = None) -> Callable[[], float]:
    """``wall`` (``perf_counter``) or ``process`` (CPU time of this process, all its threads:
    far less disturbed than wall time by other jobs on a shared machine); ``auto`` is wall on
    CUDA (after a synchronize that is the measure) and process on CPU."""
    if timer not in TIMERS:
        raise ValueError(f"timer={timer!r}; valid: {', '.join(TIMERS)}.")
    if timer == "auto":
        cuda = device is not None and torch.device(device).type == "cuda"
        timer = "wall" if cuda else "process"
    return time.perf_counter if timer == "wall" else time.process_time


def timed(fn: Callable[[], object], device=None, timer: str = "wall") -> float:
    """Seconds of one call of ``fn``, synchronized on a GPU."""
    now = clock(timer, device)
    synchronize(device)
    start = now()
    fn()
    synchronize(device)
    return now() - start


def timed_wall_and_cpu(fn: Callable[[], object]) -> Tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one call of ``fn`` (CPU work only)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def rotated(items: List[str], shift: int) -> List[str]:
    """The order of round ``shift``: every item takes every position equally often."""
    shift %= len(items)
    return items[shift:] + items[:shift]


def interleaved(
    fns: Dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    device=None,
    timer: str = "wall",
    after: Optional[Callable[[str, int, float], None]] = None,
) -> Dict[str, List[float]]:
    """Seconds of ``repeats`` calls of every function, interleaved, after ``warmup`` discarded
    rounds; ``{name: [seconds per repeat]}``.

    ``after(name, round, seconds)`` runs after each call, outside the timed span (a check of the
    call's result, a log line, clean-up); ``round`` counts the warm-up rounds first.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    if not fns:
        raise ValueError("interleaved() needs at least one function to time.")
    names = list(fns)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(warmup + repeats):
        for name in rotated(names, rep):
            seconds = timed(fns[name], device, timer)
            if rep >= warmup:
                samples[name].append(seconds)
            if after is not None:
                after(name, rep, seconds)
    return samples


def summarize(samples: Sequence[float]) -> Dict:
    """``{"median", "min", "max", "samples"}`` of a list of measurements."""
    if not samples:
        raise ValueError("summarize() needs at least one sample.")
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": list(samples),
    }


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> Optional[float]:
    """Median over repeats of ``numerator[i] / denominator[i]`` (same repeat, so a drift of the
    machine's load cancels out); None when the lists do not pair up or a denominator is 0."""
    if not numerator or len(numerator) != len(denominator) or not all(denominator):
        return None
    return statistics.median(x / y for x, y in zip(numerator, denominator))
