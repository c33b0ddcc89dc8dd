"""The prepared GPU run of the fused GN kernels (``bash benchmarks/gpu/run.sh``; docs/fused_gn.md).

Steps, each written to ``results.json`` and ``results.md`` in ``--out`` as soon as it (or a row
of it) finishes, so a timeout keeps what finished:

1. ``environment``: GPU, versions, ``GN_DET_TRITON``.
2. ``precompile``: every Triton variant of the Mask R-CNN shape matrix compiled in parallel
   processes into Triton's cache (``gn_det.layers.triton_emulation``), so later steps do not
   compile one by one.
3. ``correctness``: (a) the Triton kernel tests natively (``tests/layers/test_triton_interpreted.py``
   with ``GN_DET_TEST_DEVICE=cuda``); (b) one GN Mask R-CNN R50-FPN training step with
   ``MODEL.GN.FUSED`` True vs False, same weights and batch: every loss and gradient within the
   CPU tests' tolerance; (c) the checked mode's verdict per kernel variant.
4. ``layers``: GN+ReLU at every Mask R-CNN shape, fp32/bf16 x NCHW/channels-last: fused vs
   ``nn.GroupNorm`` + ReLU, inference and training (with the recompute for the next layer),
   and the fused op's achieved bandwidth against a device copy of the same tensor.
5. ``models``: BN*, Detectron2 GN, gn_det GN, gn_det GN+WS (``gn_det.benchmark.variants``) at
   800x1333, 2 and 1 images, fp32 and bf16 autocast: training step, inference, and
   ``torch.cuda.max_memory_allocated`` (first step, steady training, inference).

Estimated on one H100: ~1 min of compiles and correctness, ~1 min of layers, ~2-3 min of models;
``--budget-s`` (default 540) stops starting new rows before the device tool's 10-minute limit.
``--dry-run`` runs every step on CPU with tiny shapes (a test in the suite does).
"""
import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# Packages a bare GPU image lacks (benchmarks/gpu/prepare_deps.sh), after site-packages.
_DEPS = os.environ.get("GN_DET_GPU_DEPS", "")
if _DEPS and _DEPS not in sys.path:
    sys.path.append(_DEPS)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.gpu import report  # noqa: E402

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass
class Settings:
    device: str
    layer_shapes: List[Tuple[str, Tuple[int, ...], int]]
    model_size: Tuple[int, int]
    model_images: Tuple[int, ...]
    arch: str = "R50-FPN"
    dtypes: Tuple[str, ...] = ("fp32", "bf16")
    layouts: Tuple[str, ...] = ("nchw", "channels_last")
    precompile_dtypes: Tuple[str, ...] = ("fp32", "fp16", "bf16")
    workers: int = 12
    warmup: int = 2
    repeats: int = 5
    kernel_tests: Tuple[str, ...] = ()  # extra pytest arguments
    workload: Dict[str, int] = field(default_factory=dict)
    variants: Tuple[str, ...] = ("a", "b", "c", "d")
    model_rows: Optional[List[Tuple[str, str]]] = None  # (dtype, variant); None: every pair

    def model_pairs(self) -> List[Tuple[str, str]]:
        return self.model_rows or [(d, v) for d in self.dtypes for v in self.variants]


def gpu_settings() -> Settings:
    from gn_det.layers.triton_emulation import MASK_RCNN_GN_SHAPES

    return Settings("cuda", MASK_RCNN_GN_SHAPES, (800, 1333), (2, 1), workers=min(12, os.cpu_count() or 1))


def dry_run_settings() -> Settings:
    shapes = [("tiny whole groups", (2, 32, 7, 7), 8), ("tiny split groups", (1, 64, 40, 40), 8)]
    return Settings(
        "cpu", shapes, (64, 96), (1,), arch="R18-FPN", layouts=("nchw",), precompile_dtypes=("fp32",),
        workers=0, warmup=0, repeats=1, kernel_tests=("-k", "verified_once"),
        # Every variant goes through the same code: Detectron2's GN, gn_det GN+WS (fused), and
        # gn_det GN under bf16 autocast cover the paths.
        model_rows=[("fp32", "b"), ("fp32", "d"), ("bf16", "c")],
        workload=dict(instances_per_image=2, proposals_per_image=32, rois_per_image=16, detections_per_image=4),
    )


class Run:
    """The results so far, rewritten to ``out`` after every step and row."""

    def __init__(self, out: Path, budget_s: float, dry_run: bool):
        self.out = out
        self.deadline = time.time() + budget_s
        self.results = {"dry_run": dry_run, "budget_s": budget_s, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "steps": {}}

    def remaining(self) -> float:
        return self.deadline - time.time()

    def write(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))
        try:
            page = report.markdown(self.results)
        except Exception:  # noqa: BLE001 - the JSON above holds everything; keep running
            page = f"# GPU run\n\nThe page could not be written (results.json has the results):\n\n```\n{traceback.format_exc()}```\n"
        (self.out / "results.md").write_text(page)

    def step(self, name: str, fn, settings: Settings) -> None:
        record = self.results["steps"].setdefault(name, {})
        if self.remaining() <= 0:
            record["status"] = "skipped: time budget spent"
            self.write()
            return
        print(f"== {name} ({self.remaining():.0f} s of the budget left)", flush=True)
        start = time.time()
        record["status"] = "running"
        try:
            fn(self, record, settings)
            record["status"] = record.get("status_override", "ok")
        except Exception:  # noqa: BLE001 - record it, run the next step
            record["status"] = "error"
            record["error"] = traceback.format_exc()
            print(record["error"], flush=True)
        record["seconds"] = round(time.time() - start, 1)
        self.write()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(fn, device: str, warmup: int, repeats: int) -> float:
    if device.startswith("cuda"):
        from triton.testing import do_bench  # flushes L2 between calls, median of many

        return float(do_bench(fn, warmup=10, rep=40, return_mode="median"))
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


# --- 1. environment ------------------------------------------------------------------------------
def environment(run: Run, record: dict, s: Settings) -> None:
    import detectron2

    from gn_det.layers import cpu_kernels_available
    from gn_det.layers.group_norm_act import triton_available

    record.update(python=platform.python_version(), torch=torch.__version__, detectron2=detectron2.__version__,
                  gn_det_triton=os.environ.get("GN_DET_TRITON", "(unset: checked)"),
                  cpu_kernels=cpu_kernels_available(), triton=None, device=s.device)
    if triton_available():
        import triton

        record["triton"] = triton.__version__
    if s.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        record.update(gpu=props.name, capability=list(torch.cuda.get_device_capability(0)),
                      sms=props.multi_processor_count, memory_gib=round(props.total_memory / 2**30, 1))


# --- 2. precompile -------------------------------------------------------------------------------
def _compile_jobs(job) -> Tuple[int, float]:
    name, shape, groups, dtype, layout, target = job
    from gn_det.layers.triton_emulation import compile_launch, emulate_layer
    from gn_det.layers.triton_launch import TRITON_BACKEND

    start = time.time()
    launches = [launch for report_ in emulate_layer(TRITON_BACKEND, shape, groups, _DTYPES[dtype],
                                                    layout == "channels_last").values()
                for launch in report_.launches]
    for launch in launches:
        compile_launch(launch, target)
    return len(launches), time.time() - start


def precompile(run: Run, record: dict, s: Settings) -> None:
    target = ("cuda", 90, 32)
    if s.device == "cuda":
        from triton.runtime import driver

        current = driver.active.get_current_target()
        target = (current.backend, current.arch, current.warp_size)
    shapes = s.layer_shapes if s.workers else s.layer_shapes[:1]
    jobs = [(n, shape, g, d, lay, target) for n, shape, g in shapes for d in s.precompile_dtypes for lay in s.layouts]
    if s.workers:
        import multiprocessing

        with ProcessPoolExecutor(s.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_compile_jobs, jobs))
    else:
        done = [_compile_jobs(job) for job in jobs]
    record.update(target=list(target), layers=len(jobs), launches=sum(n for n, _ in done),
                  worker_seconds=round(sum(t for _, t in done), 1))


# --- 3. correctness ------------------------------------------------------------------------------
@contextlib.contextmanager
def _exact_math(device: str):
    """No TF32, deterministic convolutions: the two models differ only in their GN kernels."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def _spec(s: Settings, images: int):
    from gn_det.benchmark.workload import WorkloadSpec

    return WorkloadSpec(height=s.model_size[0], width=s.model_size[1], images_per_batch=images, **s.workload)


def _training_step(cfg, workload, state_dict=None):
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from gn_det.benchmark.fixed_workload import set_fixed_workload

    torch.manual_seed(0)
    model = build_model(cfg).train()
    if state_dict is not None:
        model.load_state_dict(state_dict)
    set_fixed_workload(model, workload)
    inputs = [{**x, "image": x["image"].to(model.device), "instances": x["instances"].to(model.device)}
              for x in workload.inputs]
    with EventStorage(0):
        torch.manual_seed(0)
        losses = model(inputs)
        sum(losses.values()).backward()
    grads = {n: p.grad.detach().double() for n, p in model.named_parameters() if p.grad is not None}
    return model.state_dict(), {k: v.detach().double() for k, v in losses.items()}, grads


def _tolerance_ratio(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - e| / (atol + rtol |e|) with the CPU tests' model tolerance (``assert_close_at_scale``:
    atol 1e-5 x max(1, max |e|), rtol 1e-4): <= 1 passes."""
    atol = 1e-5 * max(1.0, expected.abs().max().item()) if expected.numel() else 1e-5
    return ((actual - expected).abs() / (atol + 1e-4 * expected.abs())).max().item() if expected.numel() else 0.0


def correctness(run: Run, record: dict, s: Settings) -> None:
    # (a) The kernel tests, natively on the GPU (on CPU: under the interpreter, a subset).
    env = dict(os.environ, GN_DET_TEST_DEVICE="cuda") if s.device == "cuda" else dict(os.environ, TRITON_INTERPRET="1")
    args = ["-q", "-p", "no:cacheprovider", "tests/layers/test_triton_interpreted.py", *s.kernel_tests]
    pytest_main = f"import sys; sys.path.append({_DEPS!r}); import pytest; sys.exit(pytest.main({args!r}))"
    proc = subprocess.run([sys.executable, "-c", pytest_main], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=max(60, run.remaining()))
    (run.out / "triton_tests.txt").write_text(proc.stdout + proc.stderr)
    lines = proc.stdout.strip().splitlines()
    record["kernel_tests"] = {"returncode": proc.returncode, "summary": lines[-1] if lines else ""}
    run.write()
    # (b) A GN Mask R-CNN training step, MODEL.GN.FUSED True vs False.
    from gn_det.benchmark.variants import build_variant_cfg
    from gn_det.benchmark.workload import make_workload

    spec = _spec(s, s.model_images[0])
    workload = make_workload(spec)
    cfgs = {}
    for fused in (False, True):
        cfg = build_variant_cfg("c", spec, s.device, arch=s.arch).clone()
        cfg.defrost()
        cfg.MODEL.GN.FUSED = fused
        cfgs[fused] = cfg
    with _exact_math(s.device):
        weights, ref_losses, ref_grads = _training_step(cfgs[False], workload)
        _, losses, grads = _training_step(cfgs[True], workload, weights)
    ratios = {f"loss {k}": _tolerance_ratio(losses[k], v) for k, v in ref_losses.items()}
    ratios.update({f"grad {n}": _tolerance_ratio(grads[n], g) for n, g in ref_grads.items()})
    failing = sorted((r, n) for n, r in ratios.items() if not r <= 1.0)
    record["model_step"] = {
        "model": f"gn_det GN Mask R-CNN {s.arch}, {spec.images_per_batch} image(s) of {spec.height}x{spec.width}",
        "compared": len(ratios), "within_tolerance": len(ratios) - len(failing),
        "worst": sorted(((round(r, 3), n) for n, r in ratios.items()), reverse=True)[:5],
        "losses_fused": {k: v.item() for k, v in losses.items()},
        "losses_unfused": {k: v.item() for k, v in ref_losses.items()},
    }
    # (c) What the checked mode concluded for each variant it met.
    record["verdicts"] = _verdicts()
    if proc.returncode != 0 or failing or any(v["status"] != "verified" for v in record["verdicts"]):
        record["status_override"] = "failed"


def _verdicts() -> List[dict]:
    from gn_det.layers.group_norm_act import triton_available

    if not triton_available():
        return []
    from gn_det.layers.triton_checked import CHECKED_TRITON

    return CHECKED_TRITON.verdicts()


# --- 4. layers -----------------------------------------------------------------------------------
def layers(run: Run, record: dict, s: Settings) -> None:
    from gn_det.layers import group_norm_act
    from gn_det.layers.group_norm_act import choose_backend

    rows = record.setdefault("rows", [])
    for dtype in s.dtypes:
        for layout in s.layouts:
            for name, shape, groups in s.layer_shapes:
                if run.remaining() < 30:
                    record["status_override"] = "stopped: time budget"
                    return
                x = torch.randn(shape, device=s.device, dtype=_DTYPES[dtype]).contiguous(memory_format=_LAYOUTS[layout])
                gn = nn.GroupNorm(groups, shape[1]).to(s.device)
                if s.device == "cpu" and dtype != "fp32":
                    gn = gn.to(_DTYPES[dtype])  # CPU nn.GroupNorm wants matching dtypes
                xg, dy = x.detach().requires_grad_(), torch.randn_like(x)

                def torch_infer():
                    with torch.no_grad():
                        return F.relu(gn(x))

                def fused_infer():
                    with torch.no_grad():
                        return group_norm_act(x, gn.weight, gn.bias, groups)

                def torch_train():
                    F.relu(gn(xg)).backward(dy)

                def fused_train():
                    y = group_norm_act(xg, gn.weight, gn.bias, groups)
                    y._gn_det_group_norm_act.recompute()  # what the next layer's backward asks for
                    y.backward(dy)

                fns = dict(torch_infer=torch_infer, fused_infer=fused_infer, torch_train=torch_train,
                           fused_train=fused_train, copy=lambda: x.clone())
                ms = {k: _median_ms(fn, s.device, s.warmup, s.repeats) for k, fn in fns.items()}
                backend, why = choose_backend(x, gn.weight, groups, True)
                rows.append(dict(report.layer_row(name, shape, dtype, layout, ms, x, groups), backend=backend.name, why=why))
                run.write()
                del x, xg, dy


# --- 5. models -----------------------------------------------------------------------------------
def _peak(device: str) -> Optional[float]:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def models(run: Run, record: dict, s: Settings) -> None:
    from detectron2.utils.events import EventStorage

    from gn_det.benchmark.measure import BenchmarkedModel
    from gn_det.benchmark.variants import VARIANTS, build_variant_cfg
    from gn_det.benchmark.workload import make_workload

    rows = record.setdefault("rows", [])
    for images in s.model_images:
        spec = _spec(s, images)
        workload = make_workload(spec)
        for dtype, key in s.model_pairs():
            if run.remaining() < 45:
                record["status_override"] = "stopped: time budget"
                return
            autocast = torch.autocast(s.device, dtype=_DTYPES[dtype], enabled=dtype != "fp32")
            _reset_peak(s.device)
            bench = BenchmarkedModel(build_variant_cfg(key, spec, s.device, arch=s.arch))
            bench.set_workload(workload)
            with EventStorage(0), autocast:
                start = time.time()
                bench.step(0)
                _sync(s.device)
                first = (time.time() - start, _peak(s.device))
                for i in range(s.warmup):
                    bench.step(i + 1)
                _reset_peak(s.device)
                train = [_timed(lambda: bench.step(0), s.device) for _ in range(s.repeats)]
                train_peak = _peak(s.device)
                bench.infer()
                _reset_peak(s.device)
                infer = [_timed(bench.infer, s.device) for _ in range(s.repeats)]
                infer_peak = _peak(s.device)
            bench.close()
            del bench
            gc.collect()
            if s.device == "cuda":
                torch.cuda.empty_cache()
            rows.append(dict(variant=f"({key}) {VARIANTS[key].name}", images=images, dtype=dtype,
                             size=list(s.model_size), first_step_s=round(first[0], 3),
                             first_step_peak_mib=first[1], train_step_ms=statistics.median(train) * 1e3,
                             train_peak_mib=train_peak, inference_ms=statistics.median(infer) * 1e3,
                             inference_peak_mib=infer_peak))
            run.write()
    record["verdicts"] = _verdicts()


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


STEPS = (("environment", environment), ("precompile", precompile), ("correctness", correctness),
         ("layers", layers), ("models", models))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_results"))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: checks the script, not the GPU")
    parser.add_argument("--budget-s", type=float, default=540.0, help="stop starting rows after this long")
    parser.add_argument("--steps", nargs="*", default=[name for name, _ in STEPS], help="a subset of the steps")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("No CUDA device: run on a GPU machine, or --dry-run on CPU.", file=sys.stderr)
        return 2
    unknown = set(args.steps) - {name for name, _ in STEPS}
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; valid: {', '.join(name for name, _ in STEPS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dry_run_settings() if args.dry_run else gpu_settings()
    run = Run(out, args.budget_s, args.dry_run)
    for name, fn in STEPS:
        if name in args.steps:
            run.step(name, fn, settings)
    failed = [n for n, r in run.results["steps"].items() if r["status"] in ("error", "failed")]
    print(f"results: {out / 'results.md'}; steps not ok: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
