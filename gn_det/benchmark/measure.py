"""One variant's model on the fixed workload: a training step, an inference batch, and its peak
memory (the one meter, ``memory.PeakMemory``, in a fresh process: ``run_memory_measurement``).

Times come from the one timing helper (``timing.timed``: wall-clock seconds around one call,
``torch.cuda.synchronize`` on both sides on a GPU). Peak memory is the growth from just before
the model is built to the peak over the measured steps (weights, gradients, optimizer state,
activations and workspace).
"""
import dataclasses
import itertools
from typing import Dict, Optional

import torch
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage, get_event_storage

from .fixed_workload import set_fixed_workload
from .memory import PeakMemory, measure_in_fresh_process
from .timing import timed
from .variants import build_variant_cfg
from .workload import Workload, WorkloadSpec, make_workload

__all__ = [
    "BenchmarkedModel",
    "measure_peak_memory",
    "model_memory",
    "run_memory_measurement",
]


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

    def step(self, seed: int = 0) -> None:
        """One training step (Detectron2's ``run_step``); must run inside an ``EventStorage``
        (Detectron2's models log to it). Call ``check_sampling`` after it."""
        self.model.train()
        torch.manual_seed(seed)  # the samplers draw the same RoIs in every variant
        self.trainer.run_step()

    def infer(self) -> None:
        """One inference call on the workload's batch (all its images)."""
        self.model.eval()
        with torch.no_grad():
            self.model(self._inputs)

    def train_step(self, seed: int = 0) -> float:
        """Seconds for one training step. Raises if the RoI sampling was not the fixed one."""
        elapsed = timed(lambda: self.step(seed), self.device)
        self.check_sampling()
        return elapsed

    def inference_batch(self) -> float:
        """Seconds for one inference call on the workload's batch (all its images)."""
        return timed(self.infer, self.device)

    def check_sampling(self) -> None:
        """Raise if the last training step did not sample the fixed RoI counts."""
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


def measure_peak_memory(
    cfg, workload: Workload, mode: str, steps: int, seed: int = 0, meter: Optional[PeakMemory] = None
) -> Dict:
    """Peak memory growth (bytes) of building ``cfg``'s model and running ``steps`` steps.

    ``mode``: "train" (training steps; two are needed to reach the steady state, where the
    previous step's gradients and the momentum buffers are alive during the forward) or
    "inference". Meant to run in a fresh process (``run_memory_measurement``).
    """
    if mode not in ("train", "inference"):
        raise ValueError(f"mode must be 'train' or 'inference', got {mode!r}.")
    meter = meter or PeakMemory(cfg.MODEL.DEVICE)
    meter.start()
    bench = BenchmarkedModel(cfg, seed=seed)
    bench.set_workload(workload)
    with EventStorage(0):
        for i in range(steps):
            if mode == "train":
                bench.train_step(seed=seed + i)
            else:
                bench.inference_batch()
    result = {**meter.result(), "steps": steps}
    bench.close()
    return result


def model_memory(meter: PeakMemory, variant: str, spec: Dict, mode: str, device: str, steps: int,
                 seed: int, freeze_at: int = 2, arch: str = "R50-FPN") -> Dict:
    """The fresh-process target of ``run_memory_measurement``."""
    spec = WorkloadSpec(**spec)
    workload = make_workload(spec)  # before the meter starts: the inputs are not the model's memory
    cfg = build_variant_cfg(variant, spec, device, freeze_at=freeze_at, arch=arch)
    return measure_peak_memory(cfg, workload, mode, steps, seed, meter)


def run_memory_measurement(variant: str, spec: WorkloadSpec, mode: str, device: str, steps: int,
                           seed: int, threads: int, freeze_at: int = 2, arch: str = "R50-FPN",
                           timeout_s: float = 3600.0) -> Dict:
    """``measure_peak_memory`` of a variant in a fresh process; its result dict.

    Raises RuntimeError with the child's stderr tail when it fails.
    """
    return measure_in_fresh_process(
        "gn_det.benchmark.measure:model_memory",
        dict(variant=variant, spec=dataclasses.asdict(spec), mode=mode, device=device,
             steps=steps, seed=seed, freeze_at=freeze_at, arch=arch),
        device=device,
        threads=threads,
        what=f"variant ({variant}) {mode} ({arch}) at {spec.height}x{spec.width}, "
             f"{spec.images_per_batch} image(s)",
        timeout_s=timeout_s,
    )
