"""One peak-memory measurement in a fresh process, so no allocator cache or other model skews it.

Run by ``run_memory_measurement`` as ``python -m gn_det.benchmark.memory_worker '<json request>'``;
prints one line ``GN_DET_MEMORY_RESULT <json>`` on stdout.
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
        [sys.executable, "-m", "gn_det.benchmark.memory_worker", json.dumps(request)],
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


def _main(argv) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m gn_det.benchmark.memory_worker '<json request>'")
    request = json.loads(argv[0])
    import torch

    torch.set_num_threads(request["threads"])
    import gn_det  # noqa: F401  registers gn_det's modules where they exist

    from .measure import measure_peak_memory
    from .variants import build_variant_cfg
    from .workload import make_workload

    spec = WorkloadSpec(**request["spec"])
    workload = make_workload(spec)  # before the baseline: the inputs are not the model's memory
    cfg = build_variant_cfg(request["variant"], spec, request["device"])
    result = measure_peak_memory(cfg, workload, request["mode"], request["steps"], request["seed"])
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
