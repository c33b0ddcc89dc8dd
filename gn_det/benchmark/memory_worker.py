"""One peak-memory measurement in a fresh process, so no allocator cache or other model skews it.

``run_memory_measurement`` runs ``python -m gn_det.benchmark.memory_process '<json request>'``
(a module the package never imports, so it starts clean) and reads the line
``GN_DET_MEMORY_RESULT <json>`` it prints.
"""
import dataclasses
import json
import os
import subprocess
import sys
from typing import Dict

from .workload import WorkloadSpec

__all__ = ["run_memory_measurement"]

RESULT_MARKER = "GN_DET_MEMORY_RESULT "


def run_memory_measurement(variant: str, spec: WorkloadSpec, mode: str, device: str, steps: int,
                           seed: int, threads: int, timeout_s: float = 3600.0) -> Dict:
    """Measure in a child process; return its result dict (see ``measure.measure_peak_memory``).

    Raises RuntimeError with the child's stderr tail when it fails.
    """
    request = {
        "variant": variant,
        "spec": dataclasses.asdict(spec),
        "mode": mode,
        "device": device,
        "steps": steps,
        "seed": seed,
        "threads": threads,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "gn_det.benchmark.memory_process", json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=os.environ.copy(),
    )
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise RuntimeError(
        f"Memory measurement of variant ({variant}) {mode} at {spec.height}x{spec.width}, "
        f"{spec.images_per_batch} image(s) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )
