"""Timing one training step or one inference batch, and peak memory, on CPU or CUDA.

Times are wall-clock seconds around one call, with ``torch.cuda.synchronize`` on both sides on a
GPU so queued kernels are counted. Peak memory is the growth from just before the model is built
to the peak over the measured steps (weights, gradients, optimizer state, activations and
workspace): on CUDA from ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
on CPU from the process's peak resident set size (``VmHWM``, reset through
``/proc/self/clear_refs`` where the kernel allows it). CPU allocators keep freed memory, so each
CPU memory measurement runs in a fresh process (``memory_worker.py``, ``memory_process.py``).
"""
import itertools
import statistics
import time
from typing import Dict, Sequence

import torch
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage, get_event_storage

from .fixed_workload import set_fixed_workload
from .workload import Workload

__all__ = [
    "synchronize",
    "summarize",
    "BenchmarkedModel",
    "measure_peak_memory",
    "current_rss_bytes",
    "reset_peak_rss",
    "peak_rss_bytes",
]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work; nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


class BenchmarkedModel:
    """A variant's model, optimizer and Detectron2 trainer, ready to time on a workload.

    The training step is Detectron2's own ``SimpleTrainer.run_step`` (forward, loss sum,
    ``zero_grad``, backward, metrics, ``optimizer.step``) with the optimizer of
    ``detectron2.solver.build_optimizer`` (SGD, momentum, weight decay).
    """

    def __init__(self, cfg, seed: int = 0):
        torch.manual_seed(seed)  # same initialization in every process that builds this variant
        self.cfg = cfg
        self.model = build_model(cfg)
        self.device = self.model.device
        self.optimizer = build_optimizer(cfg, self.model)
        self.trainer = SimpleTrainer(self.model, [], self.optimizer)
        self.workload: Workload = None
        self._inputs = None

    @property
    def inputs(self):
        """The workload's model inputs, on the model's device."""
        return self._inputs

    def set_workload(self, workload: Workload) -> None:
        self.workload = workload
        set_fixed_workload(self.model, workload)
        # Images go to the device once: the benchmark times the model, not the host-to-device copy.
        self._inputs = [
            {**x, "image": x["image"].to(self.device), "instances": x["instances"].to(self.device)}
            for x in workload.inputs
        ]
        self.trainer.reset_data_loader(lambda: itertools.repeat(self._inputs))

    def train_step(self, seed: int = 0) -> float:
        """Seconds for one training step. Raises if the RoI sampling was not the fixed one.

        Must run inside an ``EventStorage`` (Detectron2's models log to it).
        """
        self.model.train()
        torch.manual_seed(seed)  # the samplers draw the same RoIs in every variant
        synchronize(self.device)
        start = _now()
        self.trainer.run_step()
        synchronize(self.device)
        elapsed = _now() - start
        self._check_sampling()
        return elapsed

    def inference_batch(self) -> float:
        """Seconds for one inference call on the workload's batch (all its images)."""
        self.model.eval()
        synchronize(self.device)
        start = _now()
        with torch.no_grad():
            self.model(self._inputs)
        synchronize(self.device)
        return _now() - start

    def _check_sampling(self) -> None:
        spec = self.workload.spec
        storage = get_event_storage()
        fg = storage.history("roi_head/num_fg_samples").latest()
        bg = storage.history("roi_head/num_bg_samples").latest()
        if (fg, bg) != (spec.positive_rois_per_image, spec.negative_rois_per_image):
            raise RuntimeError(
                f"The RoI heads sampled {fg} positive and {bg} negative RoIs per image, not the fixed "
                f"{spec.positive_rois_per_image} and {spec.negative_rois_per_image}: the workload is "
                "not fixed, so the timings would not be comparable."
            )

    def close(self) -> None:
        self.trainer.concurrent_executor.shutdown(wait=True)


def _now() -> float:
    return time.perf_counter()


# ---- CPU resident memory (Linux /proc) ------------------------------------------------------

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


def measure_peak_memory(cfg, workload: Workload, mode: str, steps: int, seed: int = 0) -> Dict:
    """Peak memory growth (bytes) of building ``cfg``'s model and running ``steps`` steps.

    ``mode``: "train" (training steps; two are needed to reach the steady state, where the
    previous step's gradients and the momentum buffers are alive during the forward) or
    "inference". Meant to run in a fresh process on CPU (see module docstring).
    """
    if mode not in ("train", "inference"):
        raise ValueError(f"mode must be 'train' or 'inference', got {mode!r}.")
    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        method = "torch.cuda.max_memory_allocated"
    else:
        baseline = current_rss_bytes()
        method = "VmHWM after clear_refs" if reset_peak_rss() else "VmHWM (not resettable)"
    bench = BenchmarkedModel(cfg, seed=seed)
    bench.set_workload(workload)
    with EventStorage(0):
        for i in range(steps):
            if mode == "train":
                bench.train_step(seed=seed + i)
            else:
                bench.inference_batch()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    bench.close()
    return {"peak_growth_bytes": max(0, peak - baseline), "baseline_bytes": baseline,
            "method": method, "steps": steps}
