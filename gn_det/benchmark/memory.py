"""The benchmark's one memory meter: peak memory growth of some work, in a fresh process.

CPU: the process's peak resident set size (``VmHWM``, reset to the current RSS through
``/proc/self/clear_refs`` where the kernel allows it) minus the RSS when the meter starts. GPU:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` minus what was allocated
at the start. CPU allocators keep memory that was freed, so every measurement runs in a new
Python process (``measure_in_fresh_process``): no other model or earlier run skews it.

The work is a function named ``"package.module:function"``, called in the child as
``function(meter, **kwargs)``: it prepares what must not count (inputs), calls
``meter.start()``, does the work, may call ``meter.mark(label)`` (e.g. when backward starts:
what the forward kept), and returns a dict of extra JSON fields (or None).
"""
import importlib
import json
import os
import subprocess
import sys
from typing import Dict, Optional

import torch

__all__ = [
    "PeakMemory",
    "measure_in_fresh_process",
    "current_rss_bytes",
    "reset_peak_rss",
    "peak_rss_bytes",
]

RESULT_MARKER = "GN_DET_MEMORY_RESULT "


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line: peak RSS needs Linux.")


def current_rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Set the process's peak RSS to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    return _status_kib("VmHWM") * 1024


class PeakMemory:
    """Peak growth of RSS (CPU) or of CUDA allocated memory (GPU) from ``start()`` on."""

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.baseline: Optional[int] = None
        self.method = ""
        self.marks: Dict[str, int] = {}

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def _current(self) -> int:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.memory_allocated(self.device)
        return current_rss_bytes()

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "torch.cuda.max_memory_allocated"
        else:
            self.method = "VmHWM after clear_refs" if reset_peak_rss() else "VmHWM (not resettable)"
        self.baseline = self._current()
        self.marks = {}

    def mark(self, label: str) -> None:
        """Record the memory in use now, above the start (e.g. what a forward kept)."""
        self.marks[label] = max(0, self._current() - self.baseline)

    def result(self) -> Dict:
        if self.baseline is None:
            raise RuntimeError("PeakMemory.result() before start(): the work never started the meter.")
        if self.cuda:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = peak_rss_bytes()
        return {
            "peak_growth_bytes": max(0, peak - self.baseline),
            "baseline_bytes": self.baseline,
            "method": self.method,
            "marks_bytes": dict(self.marks),
        }


def _resolve(target: str):
    module, _, name = target.partition(":")
    if not module or not name:
        raise ValueError(f"target must be 'package.module:function', got {target!r}.")
    return getattr(importlib.import_module(module), name)


def child_main(argv) -> None:
    """The fresh process: ``argv[0]`` is the JSON request written by measure_in_fresh_process."""
    request = json.loads(argv[0])
    torch.set_num_threads(request["threads"])
    import gn_det  # noqa: F401  registers gn_det's modules

    meter = PeakMemory(request["device"])
    extra = _resolve(request["target"])(meter, **request["kwargs"]) or {}
    print(RESULT_MARKER + json.dumps({**meter.result(), **extra}), flush=True)


def measure_in_fresh_process(
    target: str,
    kwargs: Dict,
    device: str = "cpu",
    threads: int = 1,
    what: str = "",
    timeout_s: float = 3600.0,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[str] = None,
) -> Dict:
    """Run ``target(meter, **kwargs)`` in a new Python process; return the meter's result
    (``peak_growth_bytes``, ``baseline_bytes``, ``method``, ``marks_bytes``) plus the fields
    the target returned. ``kwargs`` must be JSON. ``env``, ``cwd``: the process's environment and
    folder (default: this one's; ``python -c`` puts the folder first on the import path, before
    ``PYTHONPATH``). RuntimeError with the child's stderr tail (and ``what`` was measured) when it
    fails."""
    _resolve(target)  # a wrong name fails here, not after a process start
    request = {"target": target, "kwargs": kwargs, "device": device, "threads": threads}
    # -c rather than -m: running a module of an imported package would re-import it.
    code = "import sys; from gn_det.benchmark.memory import child_main; child_main(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=os.environ.copy() if env is None else env,
        cwd=cwd,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise RuntimeError(
        f"Memory measurement{' of ' + what if what else ''} failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )
