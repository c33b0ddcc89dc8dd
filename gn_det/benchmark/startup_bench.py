"""Validation and start-up at train2017 size, side by side with Detectron2 (``tools/benchmark.py
startup``).

On the generated train2017-sized split (118,287 images, 860,001 annotations; ``coco_scale_data``):

1. **Dataset cost**, each in a fresh process (wall, CPU, peak RSS from the benchmark's meter):
   Detectron2's ``load_coco_json`` (what its loader runs in every training process) against what
   gn_det's train command does before ``launch``: ``gn_det.engine.setup.validate_and_launch`` on
   the command line ``--config-file CFG --dataset coco_gen_train JSON DIR`` (config checks,
   registration, the dataset's validation with image headers) with a no-op main, into a fresh
   OUTPUT_DIR; the same again into that OUTPUT_DIR (a requeued or resumed run, which finds what
   validation remembered there); with ``--no-image-check``; and gn_det's registration alone
   (``gn_det.data.register_dataset``).
2. **Time to the first iteration**: the train command started as a user starts it, until its log
   says the first iteration is done (``Saving checkpoint to`` with ``SOLVER.MAX_ITER 1``: the
   save right after iteration 0) and until training starts (``Starting training from
   iteration 0``), with the peak memory of its whole process tree (sum of PSS, sampled every
   0.5 s). gn_det: ``tools/train_net.py --dataset coco_gen_train JSON DIR``. Detectron2: its own
   ``tools/train_net.py`` from the pinned commit, unmodified, reading the same files as
   ``coco_2017_train`` through ``DETECTRON2_DATASETS`` (Detectron2's layout). With
   ``--num-gpus 2`` on CPU Detectron2's script stops at ``DistributedDataParallel`` (it passes a
   GPU id for a CPU model), so it runs through a wrapper that imports it unchanged and gives a CPU
   model no device id, as gn_det's ``Trainer`` does. Same config for both: Detectron2's
   ``mask_rcnn_R_50_FPN_1x.yaml`` (random init, CPU, 1 image per process, 320 px, 2 loader
   workers per process, ``INPUT.MASK_FORMAT`` as ``--mask-format`` says: Detectron2's
   ``polygon`` by default).

Runs are interleaved (order rotated every repeat); the load average is printed before and after.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

from .coco_scale_data import TRAIN2017, scaled_spec, split_paths, write_split
from .memory import measure_in_fresh_process
from .report import write_json
from .timing import rotated

__all__ = ["run", "add_arguments", "first_iteration_run"]

NAME = "coco_gen_train"
D2_NAME = "coco_2017_train"
START = re.compile(r"Starting training from iteration 0")
FIRST = re.compile(r"Saving checkpoint to .*model_final\.pth")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D2_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"

_CPU_DDP_WRAPPER = '''"""Detectron2's tools/train_net.py (d2_train_net.py beside this file, unmodified) with one change
for CPU processes: DistributedDataParallel gets no device id for a CPU model (Detectron2 passes the
local rank, which DDP rejects for CPU modules). Written by gn_det's startup benchmark."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detectron2.engine import defaults  # noqa: E402

import d2_train_net  # noqa: E402  Detectron2's own script

_create = defaults.create_ddp_model


def _create_cpu_aware(model, **kwargs):
    if not any(p.is_cuda for p in model.parameters()):
        kwargs["device_ids"] = None
    return _create(model, **kwargs)


defaults.create_ddp_model = _create_cpu_aware

if __name__ == "__main__":
    d2_train_net.invoke_main()
'''


def _config_file() -> str:
    from detectron2 import model_zoo

    return model_zoo.get_config_file(D2_CONFIG)


def _common_opts(processes: int, output_dir: str, mask_format: str = "polygon") -> List[str]:
    return ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", str(processes),
            "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()", "INPUT.MIN_SIZE_TRAIN", "(320,)",
            "INPUT.MAX_SIZE_TRAIN", "533", "DATALOADER.NUM_WORKERS", "2", "INPUT.MASK_FORMAT", mask_format,
            "OUTPUT_DIR", output_dir]


# ---- 1. dataset cost, fresh processes ------------------------------------------------------

def detectron2_load(meter, json_file: str, image_root: str) -> Dict:
    from detectron2.data.datasets import load_coco_json

    meter.start()
    wall, cpu = time.perf_counter(), time.process_time()
    records = load_coco_json(json_file, image_root, NAME)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "records": len(records)}


def gn_det_before_launch(meter, json_file: str, image_root: str, output_dir: str, image_check: bool,
                         mask_format: str) -> Dict:
    from ..engine.setup import argument_parser, validate_and_launch

    argv = ["--config-file", _config_file(), "--dataset", NAME, json_file, image_root, "--num-gpus", "1"]
    argv += [] if image_check else ["--no-image-check"]
    argv += _common_opts(1, output_dir, mask_format) + ["DATASETS.TRAIN", f"('{NAME}',)"]
    args = argument_parser().parse_args(argv)
    meter.start()
    wall, cpu = time.perf_counter(), time.process_time()
    validate_and_launch(lambda _args: None, args)  # one process: launch calls the no-op in-process
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def gn_det_register(meter, json_file: str, image_root: str) -> Dict:
    from ..data import register_dataset

    meter.start()
    wall, cpu = time.perf_counter(), time.process_time()
    register_dataset(NAME, json_file, image_root)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _with_baseline(targets: Dict[str, tuple], baseline: Optional[str]) -> Dict[str, tuple]:
    """``targets`` (name -> (..., gn_det checkout)) run with this checkout, and each gn_det one
    again with the ``baseline`` checkout, named ``<name> [baseline <label>]``."""
    if baseline is None:
        return targets
    label = _baseline_label(baseline)
    extra = {f"{name} [baseline {label}]": target[:-1] + (baseline,)
             for name, target in targets.items() if name.startswith("gn_det")}
    return {**targets, **extra}


def _env(checkout: str, **extra) -> Dict[str, str]:
    """This environment with ``checkout``'s gn_det first on the path."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([checkout] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


_FIRST = "gn_det validation + registration (train command, before launch)"
_AGAIN = "gn_det same, again into the same OUTPUT_DIR (a requeued run)"


def _dataset_rows(json_file, image_root, work, repeats, mask_format, baseline=None) -> Dict[str, List[Dict]]:
    """Each row in a fresh process; each of gn_det's train commands into a fresh OUTPUT_DIR (what
    a first run finds), and the first one's OUTPUT_DIR used again at once by a second process, as
    a requeued or resumed run finds it (what validation remembered there)."""
    validate = {"mask_format": mask_format}
    targets = _with_baseline({
        "detectron2 load_coco_json": ("detectron2_load", {}, REPO),
        _FIRST: ("gn_det_before_launch", dict(validate, image_check=True), REPO),
        "gn_det same, --no-image-check": ("gn_det_before_launch", dict(validate, image_check=False), REPO),
        "gn_det register_dataset alone (json read + summary)": ("gn_det_register", {}, REPO),
    }, baseline)
    again = {name: name.replace(_FIRST, _AGAIN) for name in targets if name.startswith(_FIRST)}
    rows = {name: [] for name in list(targets) + list(again.values())}
    for repeat in range(repeats):
        for name in rotated(list(targets), repeat):
            function, extra, checkout = targets[name]
            if function == "gn_det_before_launch":
                output_dir = os.path.join(work, "validate", f"{_slug(name)}_{repeat}")
                shutil.rmtree(output_dir, ignore_errors=True)
                extra = dict(extra, output_dir=output_dir)
            for row in [name] + ([again[name]] if name in again else []):
                measured = measure_in_fresh_process(
                    f"gn_det.benchmark.startup_bench:{function}",
                    dict(json_file=json_file, image_root=image_root, **extra), what=row, timeout_s=3600,
                    env=_env(checkout), cwd=checkout)
                measured["peak_rss_mib"] = (measured["baseline_bytes"] + measured["peak_growth_bytes"]) / 2**20
                measured["peak_growth_mib"] = measured["peak_growth_bytes"] / 2**20
                rows[row].append(measured)
                print(f"  [{repeat}] {row}: {measured['wall_s']:.1f} s wall, {measured['cpu_s']:.1f} s CPU, "
                      f"peak RSS {measured['peak_rss_mib']:.0f} MiB (+{measured['peak_growth_mib']:.0f})", flush=True)
    return rows


# ---- 2. time to the first iteration ---------------------------------------------------------

def _tree_pss_kib(root_pid: int) -> int:
    """Sum of PSS over ``root_pid`` and its descendants (shared pages counted once in total)."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
    return total


def first_iteration_run(command: List[str], env: Dict[str, str], log_path: str, timeout_s: float) -> Dict:
    """Run ``command``; seconds until its output matches START and FIRST, the exit, peak PSS,
    and for a run that fails its last line that names an error."""
    begin = time.perf_counter()
    marks: Dict[str, Optional[float]] = {"training_starts_s": None, "first_iteration_s": None}
    error = [None]
    peak = [0]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                   cwd=REPO, start_new_session=True)
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_pss_kib(process.pid))
                done.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            for line in process.stdout:
                now = time.perf_counter() - begin
                log.write(f"[{now:8.2f}] {line}")
                if marks["training_starts_s"] is None and START.search(line):
                    marks["training_starts_s"] = now
                if marks["first_iteration_s"] is None and FIRST.search(line):
                    marks["first_iteration_s"] = now
                if re.match(r"^\w*(Error|Exception|SystemExit)\b|^Input validation failed", line.strip()):
                    error[0] = line.strip()[:300]
                if now > timeout_s:
                    break
            process.wait(timeout=max(1.0, timeout_s - (time.perf_counter() - begin)))
        finally:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
            done.set()
            sampler.join()
    return {**marks, "exit_s": time.perf_counter() - begin, "returncode": process.returncode,
            "peak_pss_mib": peak[0] / 1024, "log": log_path, "error": error[0] if process.returncode else None}


def _detectron2_script(work: str) -> str:
    """Detectron2's tools/train_net.py of the installed commit (from the mirror or the package's
    source tree) beside the CPU-DDP wrapper; returns the wrapper's path."""
    target = os.path.join(work, "d2_train_net.py")
    if not os.path.isfile(target):
        mirror = os.environ.get("GN_DET_DETECTRON2_MIRROR", "/work/.mirror/facebookresearch+detectron2/repo")
        text = subprocess.run(["git", "--git-dir", mirror, "show", "HEAD:tools/train_net.py"],
                              capture_output=True, text=True, check=True).stdout
        with open(target, "w") as f:
            f.write(text)
    wrapper = os.path.join(work, "d2_train_net_cpu.py")
    with open(wrapper, "w") as f:
        f.write(_CPU_DDP_WRAPPER)
    return wrapper


def _startup_rows(root, json_file, image_root, work, repeats, processes: List[int], timeout_s,
                  mask_format, baseline=None) -> Dict[str, List[Dict]]:
    wrapper = _detectron2_script(work)
    configs = {}
    for n in processes:
        configs[f"detectron2 tools/train_net.py, {n} process(es)"] = (
            [sys.executable, wrapper, "--config-file", _config_file(), "--num-gpus", str(n)],
            ["DATASETS.TRAIN", f"('{D2_NAME}',)"], n, REPO)
        configs[f"gn_det tools/train_net.py, {n} process(es)"] = (
            ["--config-file", _config_file(), "--dataset", NAME, json_file, image_root, "--num-gpus", str(n)],
            ["DATASETS.TRAIN", f"('{NAME}',)"], n, REPO)
    configs = _with_baseline(configs, baseline)
    rows = {name: [] for name in configs}
    for repeat in range(repeats):
        for name in rotated(list(configs), repeat):
            command, opts, n, checkout = configs[name]
            if name.startswith("gn_det"):  # that checkout's train command
                command = [sys.executable, os.path.join(checkout, "tools", "train_net.py")] + command
            env = _env(checkout, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", DETECTRON2_DATASETS=root)
            slug = f"{_slug(name)}_{repeat}"
            output_dir = os.path.join(work, slug)
            shutil.rmtree(output_dir, ignore_errors=True)  # a first run: nothing remembered from an earlier one
            measured = first_iteration_run(command + opts + _common_opts(n, output_dir, mask_format), env,
                                           os.path.join(work, slug + ".log"), timeout_s)
            rows[name].append(measured)
            print(f"  [{repeat}] {name}: training starts {measured['training_starts_s']} s, first iteration done "
                  f"{measured['first_iteration_s']} s, exit {measured['exit_s']:.1f} s (code {measured['returncode']}), "
                  f"peak PSS {measured['peak_pss_mib']:.0f} MiB" + (f"; {measured['error']}" if measured["error"] else ""),
                  flush=True)
    return rows


def _median(rows: List[Dict], key: str) -> Optional[float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if len(values) == len(rows) and values else None


def format_markdown(result: Dict) -> str:
    lines = []
    if "dataset" in result:
        lines += ["", "Dataset cost (fresh process each; median; ratio to Detectron2's load_coco_json):", "",
                  "| what | wall s | CPU s | peak RSS MiB | wall × D2 | peak RSS × D2 |", "|---|---:|---:|---:|---:|---:|"]
        base = result["dataset"]["detectron2 load_coco_json"]
        for name, rows in result["dataset"].items():
            wall, cpu, rss = _median(rows, "wall_s"), _median(rows, "cpu_s"), _median(rows, "peak_rss_mib")
            lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {wall / _median(base, 'wall_s'):.2f} | "
                         f"{rss / _median(base, 'peak_rss_mib'):.2f} |")
    if "startup" in result:
        lines += ["", "Train command to first iteration (median; ratio to Detectron2's with as many processes):", "",
                  "| command | training starts s | first iteration done s | × D2 | peak PSS MiB (process tree) | × D2 |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, rows in result["startup"].items():
            d2_name = re.sub(r" \[baseline [^]]*\]", "", name).replace("gn_det", "detectron2", 1)
            d2 = result["startup"].get(d2_name, rows) if name.startswith("gn_det") else rows
            first, d2_first = _median(rows, "first_iteration_s"), _median(d2, "first_iteration_s")
            pss, d2_pss = _median(rows, "peak_pss_mib"), _median(d2, "peak_pss_mib")
            ratio = f"{first / d2_first:.2f}" if first and d2_first else "n/a"
            failed = [r["error"] or f"exit code {r['returncode']}" for r in rows if r["first_iteration_s"] is None]
            cells = [_fmt(_median(rows, "training_starts_s")), _fmt(first) if not failed else f"failed: {failed[0]}",
                     ratio, _fmt(pss, 0), f"{pss / d2_pss:.2f}" if pss and d2_pss else "n/a"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(f"\nLoad average (1, 5, 15 min) before {result['load_before']}, after {result['load_after']}.")
    return "\n".join(lines)


def _commit(checkout: str = REPO) -> Optional[str]:
    """The gn_det commit measured (the numbers change when the code does)."""
    try:
        return subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _baseline_label(checkout: str) -> str:
    """A baseline checkout's commit, or its folder's name where it is not a git checkout."""
    return _commit(checkout) or os.path.basename(os.path.normpath(checkout))


def _fmt(value, digits=1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=os.path.join("output", "coco_scale"),
                        help="where the generated data lives (made once, reused; default output/coco_scale)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of train2017's size (1.0: 118,287 images)")
    parser.add_argument("--parts", nargs="+", default=["dataset", "startup"], choices=["dataset", "startup"])
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2],
                        help="--num-gpus values of the start-up runs (CPU processes; default 1 2)")
    parser.add_argument("--multi-process-scale", type=float,
                        help="run the start-up rows with more than one process at this fraction of the size "
                             "(e.g. 0.25 where memory is short: each process loads the whole dataset)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per start-up run")
    parser.add_argument("--mask-format", default="polygon", choices=["polygon", "bitmask"],
                        help="INPUT.MASK_FORMAT of both train commands (polygon: Detectron2's default)")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run every gn_det row with the gn_det of this checkout (e.g. the commit before a "
                             "change, with its compiled kernels): before and after side by side in one run")
    parser.add_argument("--output", help="write the numbers as JSON to this path")


def run(args: argparse.Namespace) -> Dict:
    spec, root = scaled_spec(TRAIN2017, args.dir, args.scale)
    data = write_split(root, spec)
    json_file, image_root = split_paths(root, spec.split)
    work = os.path.join(root, "startup_runs")
    os.makedirs(work, exist_ok=True)
    result = {"data": data, "load_before": [round(v, 2) for v in os.getloadavg()], "config": D2_CONFIG,
              "mask_format": args.mask_format, "repeats": args.repeats, "commit": _commit()}
    baseline = getattr(args, "baseline", None)
    if baseline is not None:
        baseline = os.path.abspath(baseline)
        if not os.path.isfile(os.path.join(baseline, "tools", "train_net.py")):
            raise SystemExit(f"--baseline {baseline}: not a gn_det checkout (no tools/train_net.py)")
        result["baseline"] = {"checkout": baseline, "label": _baseline_label(baseline)}
    print(f"{'train2017-sized' if args.scale == 1.0 else f'{args.scale:g} x train2017'} split: {data['images']} images, {data['annotations']} annotations, "
          f"json {data['json_bytes'] / 2**20:.0f} MiB; load average {result['load_before']}", flush=True)
    if "dataset" in args.parts:
        result["dataset"] = _dataset_rows(json_file, image_root, work, args.repeats, args.mask_format, baseline)
    if "startup" in args.parts:
        single = [n for n in args.processes if n == 1 or args.multi_process_scale is None]
        if single:
            result["startup"] = _startup_rows(root, json_file, image_root, work, args.repeats, single,
                                              args.timeout, args.mask_format, baseline)
        several = [n for n in args.processes if n not in single]
        if several:  # at a smaller size, where the machine lacks the memory of several full loads
            spec_m, root_m = scaled_spec(TRAIN2017, args.dir, args.scale * args.multi_process_scale)
            data_m = write_split(root_m, spec_m)
            json_m, images_m = split_paths(root_m, spec_m.split)
            work_m = os.path.join(root_m, "startup_runs")
            os.makedirs(work_m, exist_ok=True)
            rows = _startup_rows(root_m, json_m, images_m, work_m, args.repeats, several, args.timeout,
                                 args.mask_format, baseline)
            label = f" at {args.multi_process_scale:g} of the size ({data_m['images']} images)"
            result.setdefault("startup", {}).update({name + label: r for name, r in rows.items()})
    result["load_after"] = [round(v, 2) for v in os.getloadavg()]
    print(format_markdown(result))
    if args.output:
        write_json(result, args.output)
    return result
