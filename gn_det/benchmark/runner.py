"""The benchmark run: every variant on every row, interleaved, then memory, then the layer section.

Rows: the first image size at every images-per-batch count, then each other image size at the
main count; all of that for each ``MODEL.BACKBONE.FREEZE_AT`` asked for. The main row (first
size, main count, first FREEZE_AT) is the headline table.
"""
import dataclasses
import datetime
import gc
import os
import platform
import time
from functools import partial
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.utils.events import EventStorage

from .layer_bench import collect_gn_shapes, run_layer_benchmark
from .measure import BenchmarkedModel, run_memory_measurement
from .timing import interleaved, paired_ratio, rotated, summarize
from .variants import ARCHITECTURES, VARIANTS, build_variant_cfg, check_variant_available
from .workload import WorkloadSpec, make_workload

__all__ = [
    "BenchmarkSettings",
    "run_benchmark",
    "compute_ratios",
    "refresh_ratios",
    "METRICS",
    "SCHEMA",
    "allocator_env",
]

SCHEMA = "gn_det.benchmark/1"
# Metric name -> unit, in the order of the tables.
METRICS = (
    ("train_step_s", "s"),
    ("inference_s_per_image", "s"),
    ("train_peak_memory_mib", "MiB"),
    ("inference_peak_memory_mib", "MiB"),
)
_MIB = 1024.0 ** 2


@dataclass
class BenchmarkSettings:
    """Everything one run measures. ``for_device`` gives the defaults for CPU, GPU and --quick."""

    device: str = "cpu"
    variants: Tuple[str, ...] = ("a", "b", "c", "d")
    image_sizes: Tuple[Tuple[int, int], ...] = ((384, 640), (256, 416))
    images_per_batch: Tuple[int, ...] = (1, 2, 4)
    main_images_per_batch: int = 2
    warmup: int = 1
    repeats: int = 3
    memory: bool = True
    memory_rows: str = "all"  # "all" rows, or only the "main" one
    memory_train_steps: int = 2
    memory_inference_steps: int = 1
    seed: int = 0
    threads: int = field(default_factory=torch.get_num_threads)
    instances_per_image: int = 8
    proposals_per_image: int = 1000
    rois_per_image: int = 512
    positive_fraction: float = 0.25
    detections_per_image: int = 100
    layers: bool = True
    layer_image_size: Tuple[int, int] = (800, 1333)
    layer_images_per_batch: int = 2
    layer_repeats: int = 5
    freeze_at: Tuple[int, ...] = (2,)
    arch: str = "R50-FPN"  # a key of variants.ARCHITECTURES, the same for every variant
    quick: bool = False

    @classmethod
    def for_device(cls, device: str, quick: bool = False, **overrides) -> "BenchmarkSettings":
        """Defaults: GPU rows at Detectron2's training sizes (800x1333, 600x1000); CPU rows at
        384x640 and 256x416 (COCO's aspect ratio; the RoI heads, which do not depend on the image
        size, dominate there) so a one-thread run ends in about 45 minutes; ``quick``: tiny images and
        RoI counts, two repeats, memory of the main row only, one thread (robust on a shared
        machine: it checks the harness, not the numbers); a few minutes on CPU."""
        if quick:
            base = dict(
                image_sizes=((128, 192), (96, 160)), images_per_batch=(1, 2), warmup=1, repeats=2,
                instances_per_image=3, proposals_per_image=96, rois_per_image=32,
                detections_per_image=8, layer_image_size=(128, 192), layer_images_per_batch=2,
                layer_repeats=2, memory_rows="main",
                threads=1, quick=True,
            )
        elif device.startswith("cuda"):
            base = dict(image_sizes=((800, 1333), (600, 1000)), warmup=3, repeats=10)
        else:
            base = {}
        base.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(device=device, **base)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"Need distinct variants, got {list(self.variants)}; valid: {', '.join(VARIANTS)}.")
        for key in self.variants:
            check_variant_available(key)
        if self.main_images_per_batch not in self.images_per_batch:
            raise ValueError(
                f"main_images_per_batch={self.main_images_per_batch} must be one of "
                f"images_per_batch={list(self.images_per_batch)}."
            )
        if self.memory_rows not in ("all", "main"):
            raise ValueError(f"memory_rows must be 'all' or 'main', got {self.memory_rows!r}.")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"Need repeats >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}.")
        if not self.device.startswith(("cpu", "cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but torch sees no CUDA device; use --device cpu.")
        if not self.freeze_at or len(set(self.freeze_at)) != len(self.freeze_at) or any(
            isinstance(f, bool) or not isinstance(f, int) or not 0 <= f <= 5 for f in self.freeze_at
        ):
            raise ValueError(
                f"freeze_at must be distinct MODEL.BACKBONE.FREEZE_AT values 0..5, got {list(self.freeze_at)}."
            )
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}.")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}.")
        for spec in self.row_specs():
            spec.validate()

    def spec(self, size: Tuple[int, int], images: int) -> WorkloadSpec:
        return WorkloadSpec(
            height=size[0], width=size[1], images_per_batch=images, seed=self.seed,
            instances_per_image=self.instances_per_image,
            proposals_per_image=self.proposals_per_image, rois_per_image=self.rois_per_image,
            positive_fraction=self.positive_fraction,
            detections_per_image=self.detections_per_image,
        )

    def row_specs(self) -> List[WorkloadSpec]:
        main_size = self.image_sizes[0]
        rows = [self.spec(main_size, n) for n in self.images_per_batch]
        rows += [self.spec(size, self.main_images_per_batch) for size in self.image_sizes[1:]]
        return rows

    def rows(self) -> List[Tuple[int, WorkloadSpec]]:
        """``(FREEZE_AT, workload)`` of every row, in table order."""
        return [(f, spec) for f in self.freeze_at for spec in self.row_specs()]

    def is_main(self, spec: WorkloadSpec, freeze_at: Optional[int] = None) -> bool:
        return ((spec.height, spec.width) == tuple(self.image_sizes[0])
                and spec.images_per_batch == self.main_images_per_batch
                and (freeze_at is None or freeze_at == self.freeze_at[0]))


# Process-wide allocator settings change CPU timings by up to ~30 % (glibc re-faulting every
# large activation each step, docs/results/2026-12-02_fused_matrix.md), so a row records them.
ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_ARENA_MAX", "GLIBC_TUNABLES", "LD_PRELOAD")


def allocator_env() -> Dict[str, str]:
    """The allocator-related environment variables that are set (empty: glibc's defaults)."""
    return {k: os.environ[k] for k in ALLOCATOR_ENV if os.environ.get(k)}


def _device_info(device: torch.device, threads: int) -> Dict:
    info = {"type": device.type, "threads": threads, "torch": torch.__version__,
            "platform": platform.platform(), "allocator_env": allocator_env()}
    import detectron2

    import gn_det

    info["detectron2"] = detectron2.__version__
    info["gn_det"] = gn_det.__version__
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = _cpu_name()
        info["cpu_count"] = os.cpu_count()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _time_rows(settings: BenchmarkSettings, rows: List[Tuple[int, WorkloadSpec]], log) -> Dict[int, Dict]:
    """Interleaved train and inference timings of every variant on every row."""
    device = torch.device(settings.device)
    keys = list(settings.variants)
    timings: Dict[int, Dict] = {}
    for freeze_at in settings.freeze_at:
        log(f"building {len(keys)} {settings.arch} models on {device}, FREEZE_AT {freeze_at}: "
            + ", ".join(f"({k}) {VARIANTS[k].name}" for k in keys))
        models = {k: BenchmarkedModel(build_variant_cfg(k, rows[0][1], settings.device, freeze_at,
                                                        settings.arch),
                                      seed=settings.seed) for k in keys}
        try:
            for row, (row_freeze_at, spec) in enumerate(rows):
                if row_freeze_at != freeze_at:
                    continue
                timings[row] = _time_row(settings, models, spec, freeze_at, device, log)
        finally:
            for bench in models.values():
                bench.close()
            del models
            gc.collect()
    return timings


def _time_row(settings, models, spec: WorkloadSpec, freeze_at: int, device, log) -> Dict:
    workload = make_workload(spec)
    for bench in models.values():
        bench.set_workload(workload)
    label = f"{spec.height}x{spec.width}, {spec.images_per_batch} im, FREEZE_AT {freeze_at}"

    def after(what, per, check=False):
        def report(k, rep, seconds):
            if check:
                models[k].check_sampling()  # stops the run if the RoI workload was not fixed
            kind = "warm-up" if rep < settings.warmup else "repeat"
            log(f"  [{label}] {kind} {rep}: ({k}) {what} {seconds / per:.3f} {'s' if per == 1 else 's/image'}")
        return report

    with EventStorage(0):
        train = interleaved({k: partial(m.step, settings.seed) for k, m in models.items()},
                            settings.repeats, settings.warmup, device, "wall",
                            after=after("train step", 1, check=True))
    infer = interleaved({k: m.infer for k, m in models.items()}, settings.repeats, settings.warmup,
                        device, "wall", after=after("inference", spec.images_per_batch))
    return {k: {"train_step_s": summarize(train[k]),
                "inference_s_per_image": summarize([t / spec.images_per_batch for t in infer[k]])}
            for k in models}


def _measure_memory(settings: BenchmarkSettings, rows: List[Tuple[int, WorkloadSpec]], log) -> Dict[int, Dict]:
    """Peak memory of every (row, variant, mode), each in a fresh process, variants interleaved."""
    keys = list(settings.variants)
    out: Dict[int, Dict] = {}
    for row, (freeze_at, spec) in enumerate(rows):
        if settings.memory_rows == "main" and not settings.is_main(spec, freeze_at):
            continue
        out[row] = {k: {} for k in keys}
        for k in rotated(keys, row):  # memory processes interleaved like the timings
            for mode, steps, metric in (
                ("train", settings.memory_train_steps, "train_peak_memory_mib"),
                ("inference", settings.memory_inference_steps, "inference_peak_memory_mib"),
            ):
                result = run_memory_measurement(k, spec, mode, settings.device, steps,
                                                settings.seed, settings.threads, freeze_at,
                                                settings.arch)
                mib = result["peak_growth_bytes"] / _MIB
                out[row][k][metric] = summarize([mib])
                out[row][k]["memory_method"] = result["method"]
                log(f"  [{spec.height}x{spec.width}, {spec.images_per_batch} im, FREEZE_AT {freeze_at}] ({k}) "
                    f"{mode} peak memory +{mib:.0f} MiB")
    return out


def compute_ratios(results: Dict[str, Dict], keys: List[str]) -> Dict:
    """Ratios of one row: ``to_a`` (each variant's median / (a)'s) and ``c_to_b``, per metric;
    and, for the timings, ``to_a_paired`` / ``c_to_b_paired``: the median over repeats of the
    ratio within the same repeat, which a slow drift of the machine's load cancels out of.
    ``None`` where a value is missing."""

    def ratio(num: str, den: str, metric: str) -> Optional[float]:
        a, b = results[num].get(metric), results[den].get(metric)
        if not a or not b or not b["median"]:
            return None
        return a["median"] / b["median"]

    def paired(num: str, den: str, metric: str) -> Optional[float]:
        a, b = results[num].get(metric), results[den].get(metric)
        return paired_ratio(a["samples"], b["samples"]) if a and b else None

    timing = [m for m, unit in METRICS if unit == "s"]
    out = {}
    if "a" in keys:
        out["to_a"] = {k: {m: ratio(k, "a", m) for m, _ in METRICS} for k in keys if k != "a"}
        out["to_a_paired"] = {k: {m: paired(k, "a", m) for m in timing} for k in keys if k != "a"}
    if "b" in keys and "c" in keys:
        out["c_to_b"] = {m: ratio("c", "b", m) for m, _ in METRICS}
        out["c_to_b_paired"] = {m: paired("c", "b", m) for m in timing}
    return out


def refresh_ratios(result: Dict) -> Dict:
    """Recompute every row's ratios from its results (e.g. for a JSON written by an older
    version); returns ``result``, changed in place."""
    keys = list(result["variants"])
    for row in result["rows"]:
        row["ratios"] = compute_ratios(row["results"], keys)
    return result


def _layer_section(settings: BenchmarkSettings, log) -> Dict:
    """Shapes from Detectron2's GN model, variant (b), on the layer workload, whichever variants
    are timed: the architecture is the same, and gn_det's fused convs call the GN op without an
    ``nn.GroupNorm`` forward, so hooks on (c) or (d) would record nothing."""
    gn_keys = ["b"]
    spec = settings.spec(settings.layer_image_size, settings.layer_images_per_batch)
    log(f"layer benchmark: recording GN shapes of ({gn_keys[0]}) at {spec.height}x{spec.width}, "
        f"{spec.images_per_batch} images")
    bench = BenchmarkedModel(build_variant_cfg(gn_keys[0], spec, settings.device, arch=settings.arch),
                             seed=settings.seed)
    try:
        bench.set_workload(make_workload(spec))
        shapes = collect_gn_shapes(bench)
    finally:
        bench.close()
        del bench
        gc.collect()
    section = run_layer_benchmark(shapes, torch.device(settings.device), settings.layer_repeats, log=log)
    section["shapes_from"] = {"variant": gn_keys[0], "arch": settings.arch,
                              "image_size": [spec.height, spec.width],
                              "images_per_batch": spec.images_per_batch}
    return section


def run_benchmark(settings: BenchmarkSettings, log: Callable[[str], None] = print) -> Dict:
    """Run everything ``settings`` asks for; return the JSON-ready result (see docs)."""
    settings.validate()
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    rows_todo = settings.rows()
    specs = [spec for _, spec in rows_todo]
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = _load_average()

    phase_s = {}
    clock = time.perf_counter()
    timings = _time_rows(settings, rows_todo, log)
    phase_s["timing"], clock = time.perf_counter() - clock, time.perf_counter()
    memory = _measure_memory(settings, rows_todo, log) if settings.memory else {}
    phase_s["memory"], clock = time.perf_counter() - clock, time.perf_counter()
    layers = _layer_section(settings, log) if settings.layers else None
    phase_s["layers"] = time.perf_counter() - clock
    log("phase wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in phase_s.items()))

    keys = list(settings.variants)
    rows = []
    for i, (freeze_at, spec) in enumerate(rows_todo):
        results = {k: {**timings[i][k], **memory.get(i, {}).get(k, {})} for k in keys}
        for k in keys:
            for metric, _ in METRICS:
                results[k].setdefault(metric, None)
        rows.append({
            "image_size": [spec.height, spec.width],
            "images_per_batch": spec.images_per_batch,
            "freeze_at": freeze_at,
            "arch": settings.arch,
            "main": settings.is_main(spec, freeze_at),
            "results": results,
            "ratios": compute_ratios(results, keys),
        })
    finished = datetime.datetime.now(datetime.timezone.utc)
    return {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "device": _device_info(device, settings.threads),
        "conditions": {"load_average_start": load_start, "load_average_end": _load_average(),
                       "wall_s": round((finished - started).total_seconds(), 1),
                       "phase_wall_s": {k: round(v, 1) for k, v in phase_s.items()}},
        "settings": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in dataclasses.asdict(settings).items()},
        "workload": {
            **_workload_summary(specs[0]),
            "rpn": "Detectron2's RPN runs in full (head, losses, decoding, NMS); its proposals are "
                   "then replaced by the fixed ones (FixedProposalsRPN)",
            "mask_head_inference": "runs on the fixed detections (FixedDetectionsROIHeads)",
            "optimizer": "detectron2.solver.build_optimizer: SGD momentum 0.9, weight decay 1e-4, LR 0",
        },
        "variants": {k: _variant_summary(k, specs[0], settings.device, settings.arch) for k in keys},
        "metrics": {m: unit for m, unit in METRICS},
        "rows": rows,
        "layers": layers,
    }


def _variant_summary(key: str, spec: WorkloadSpec, device: str, arch: str) -> Dict:
    """Name, description, overrides (the architecture's included), and the resolved MODEL.GN
    node (which GN options, e.g. a fused path's switch, were in effect)."""
    cfg = build_variant_cfg(key, spec, device, arch=arch)
    return {"name": VARIANTS[key].name, "description": VARIANTS[key].description,
            "config": {**dict(ARCHITECTURES[arch]), **VARIANTS[key].config_dict()},
            "gn_config": _plain(cfg.MODEL.GN)}


def _plain(node):
    return {k: _plain(v) for k, v in node.items()} if hasattr(node, "items") else node


def _workload_summary(spec: WorkloadSpec) -> Dict:
    summary = {k: v for k, v in dataclasses.asdict(spec).items()
               if k not in ("height", "width", "images_per_batch")}
    summary["positive_rois_per_image"] = spec.positive_rois_per_image
    summary["mask_format"] = "polygon"
    return summary
