"""Entry point of one fresh-process memory measurement (see ``memory_worker.py``).

``python -m gn_det.benchmark.memory_process '<json request>'`` prints
``GN_DET_MEMORY_RESULT <json>``; the request's fields are those ``run_memory_measurement`` writes.
"""
import json
import sys

from gn_det.benchmark.memory_worker import RESULT_MARKER


def _main(argv) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m gn_det.benchmark.memory_process '<json request>'")
    request = json.loads(argv[0])
    import torch

    torch.set_num_threads(request["threads"])
    import gn_det  # noqa: F401  registers gn_det's modules where they exist

    from gn_det.benchmark.measure import measure_peak_memory
    from gn_det.benchmark.variants import build_variant_cfg
    from gn_det.benchmark.workload import WorkloadSpec, make_workload

    spec = WorkloadSpec(**request["spec"])
    workload = make_workload(spec)  # before the baseline: the inputs are not the model's memory
    cfg = build_variant_cfg(request["variant"], spec, request["device"])
    result = measure_peak_memory(cfg, workload, request["mode"], request["steps"], request["seed"])
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
