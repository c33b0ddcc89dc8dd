"""Running a planned sweep: each cell in its own directory, resumable, one failure not fatal.

A cell's directory holds:

- ``sweep_config.yaml``: its derived config, written once. A later sweep that derives a different
  config for the same cell (another base config, schedule, ...) is refused rather than mixing two
  experiments in one directory.
- ``sweep_run.json``: what the cell is (norm, images/GPU, seed, solver values) and its attempts.
- Detectron2's output (``log.txt``, checkpoints, ``last_checkpoint``), the trainer's
  ``ap_report.json`` and ``train_time.json``.

A cell is **finished** when its ``ap_report.json`` is that of the last iteration (MAX_ITER - 1): it
is never run again. Any other cell is (re)started with ``--resume``: Detectron2 continues from
``last_checkpoint`` if the directory has one, else starts from MODEL.WEIGHTS.
"""

import datetime
import json
import logging
import os
import subprocess
import sys
import time
from typing import Callable, List, Optional, Sequence

from .plan import SweepRun

__all__ = [
    "RUN_STATE_NAME",
    "RUN_CONFIG_NAME",
    "AP_REPORT_NAME",
    "STDOUT_NAME",
    "ConfigChangedError",
    "prepare_run_dir",
    "load_run_state",
    "final_ap_report",
    "is_finished",
    "cell_command",
    "run_cell_subprocess",
    "run_cell_in_process",
    "run_sweep",
]

logger = logging.getLogger(__name__)

RUN_STATE_NAME = "sweep_run.json"
RUN_CONFIG_NAME = "sweep_config.yaml"
AP_REPORT_NAME = "ap_report.json"  # written by gn_det.engine.Trainer.test into OUTPUT_DIR
STDOUT_NAME = "sweep_stdout.log"
STATE_FORMAT = "gn_det.sweep_run/1"


class ConfigChangedError(ValueError):
    """A cell directory already holds a run of another config."""


def _write_json(path: str, data) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


def load_run_state(output_dir: str) -> Optional[dict]:
    """The cell's ``sweep_run.json``, or None when the directory has none."""
    path = os.path.join(output_dir, RUN_STATE_NAME)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _has_training_output(output_dir: str) -> bool:
    return any(
        os.path.exists(os.path.join(output_dir, name))
        for name in ("last_checkpoint", AP_REPORT_NAME, "metrics.json")
    )


def prepare_run_dir(run: SweepRun) -> dict:
    """Create the cell's directory, its config file and state; return the state.

    Raises ``ConfigChangedError`` when the directory already trained another config.
    """
    os.makedirs(run.output_dir, exist_ok=True)
    config_path = os.path.join(run.output_dir, RUN_CONFIG_NAME)
    derived = run.cfg.dump()
    existing = None
    if os.path.isfile(config_path):
        with open(config_path) as f:
            existing = f.read()
    if existing is not None and existing != derived and _has_training_output(run.output_dir):
        raise ConfigChangedError(
            f"{run.output_dir} already holds a run of another config ({config_path} differs "
            f"from the config this sweep derives for {run.cell.name}). Sweep into another "
            "--output-dir, or delete that directory to retrain the cell."
        )
    if existing != derived:  # new cell, or nothing trained yet with the old config
        with open(config_path, "w") as f:
            f.write(derived)
    state = load_run_state(run.output_dir) or {"format": STATE_FORMAT, "attempts": []}
    s = run.cfg.SOLVER
    state.update(
        {
            "name": run.cell.name,
            "norm": run.cell.preset.name,
            "norm_slug": run.cell.preset.slug,
            "images_per_gpu": run.cell.images_per_gpu,
            "seed": run.cell.seed,
            "num_gpus": s.REFERENCE_WORLD_SIZE,
            "ims_per_batch": s.IMS_PER_BATCH,
            "base_lr": s.BASE_LR,
            "max_iter": s.MAX_ITER,
            "steps": list(s.STEPS),
            "warmup_iters": s.WARMUP_ITERS,
            "images_seen": run.images_seen,
            "test_datasets": list(run.cfg.DATASETS.TEST),
        }
    )
    _write_json(os.path.join(run.output_dir, RUN_STATE_NAME), state)
    return state


def final_ap_report(output_dir: str, max_iter: int) -> Optional[dict]:
    """The cell's ``ap_report.json`` if it is the final one (iteration MAX_ITER - 1), else None."""
    path = os.path.join(output_dir, AP_REPORT_NAME)
    if not os.path.isfile(path):
        return None
    from ..evaluation import load_ap_report

    report = load_ap_report(path)
    return report if report.get("iteration") == max_iter - 1 else None


def is_finished(output_dir: str, max_iter: int) -> bool:
    """Whether the cell in ``output_dir`` trained to MAX_ITER and was evaluated there."""
    return final_ap_report(output_dir, max_iter) is not None


def cell_command(run: SweepRun, num_gpus: int = 1, dataset_args: Sequence[Sequence[str]] = ()) -> List[str]:
    """The command training (resuming) one cell in a fresh Python process."""
    cmd = [
        sys.executable,
        "-m",
        "gn_det.sweep.cell",
        "--config-file",
        os.path.join(run.output_dir, RUN_CONFIG_NAME),
        "--resume",
        "--num-gpus",
        str(num_gpus),
    ]
    for name, json_file, image_root in dataset_args:
        cmd += ["--dataset", name, json_file, image_root]
    return cmd


def run_cell_subprocess(run: SweepRun, num_gpus: int = 1, dataset_args=()) -> int:
    """Train one cell in a subprocess (stdout/stderr to ``sweep_stdout.log``); its return code."""
    cmd = cell_command(run, num_gpus, dataset_args)
    with open(os.path.join(run.output_dir, STDOUT_NAME), "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode


def run_cell_in_process(run: SweepRun, num_gpus: int = 1, dataset_args=()) -> int:
    """Train one cell in this process (Detectron2's ``launch`` for ``num_gpus`` > 1); 0 on success.

    Faster to start than a subprocess, but logging handlers of earlier cells stay attached, and a
    crash that is not a Python exception ends the sweep.
    """
    from detectron2.engine import launch

    from ..engine import argument_parser
    from .cell import train_cell

    argv = cell_command(run, num_gpus, dataset_args)[3:]  # drop "python -m gn_det.sweep.cell"
    args = argument_parser().parse_args(argv)
    try:
        launch(train_cell, num_gpus, dist_url=args.dist_url, args=(args,))
    except Exception:
        logger.exception(f"{run.cell.name} failed")
        return 1
    return 0


def _tail(path: str, lines: int = 15) -> str:
    if not os.path.isfile(path):
        return ""
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def run_sweep(
    runs: Sequence[SweepRun],
    num_gpus: int = 1,
    dataset_args: Sequence[Sequence[str]] = (),
    in_process: bool = False,
    after_each: Optional[Callable[[SweepRun], None]] = None,
) -> dict:
    """Run every cell that is not finished, in order; return ``{"finished", "ran", "failed"}``
    (lists of cell names). A failing cell is recorded in its state and the sweep goes on.

    Args:
        runs: the planned cells (``plan_sweep``).
        num_gpus: processes per cell (Detectron2's ``launch``; CPU processes use Gloo).
        dataset_args: ``(name, json, image_dir)`` triples registered in each cell's process.
        in_process: train in this process instead of a subprocess per cell.
        after_each: called after each cell that ran (e.g. to refresh the table and plot).
    """
    for run in runs:  # check every directory before training anything
        prepare_run_dir(run)
    done, ran, failed = [], [], []
    for index, run in enumerate(runs, 1):
        name = run.cell.name
        if is_finished(run.output_dir, run.cfg.SOLVER.MAX_ITER):
            logger.info(f"[{index}/{len(runs)}] {name}: finished earlier, not rerun")
            done.append(name)
            continue
        resumed = os.path.isfile(os.path.join(run.output_dir, "last_checkpoint"))
        logger.info(
            f"[{index}/{len(runs)}] {name}: {'resuming' if resumed else 'training'} in {run.output_dir}"
        )
        started = time.time()
        execute = run_cell_in_process if in_process else run_cell_subprocess
        returncode = execute(run, num_gpus, dataset_args)
        seconds = round(time.time() - started, 1)
        ok = returncode == 0 and is_finished(run.output_dir, run.cfg.SOLVER.MAX_ITER)
        state = load_run_state(run.output_dir)
        state["attempts"].append(
            {
                "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "wall_seconds": seconds,
                "returncode": returncode,
                "resumed": resumed,
                "finished": ok,
            }
        )
        _write_json(os.path.join(run.output_dir, RUN_STATE_NAME), state)
        if ok:
            logger.info(f"[{index}/{len(runs)}] {name}: finished in {seconds:.0f} s")
            ran.append(name)
        else:
            why = f"exit code {returncode}" if returncode else "no final ap_report.json"
            tail = _tail(os.path.join(run.output_dir, STDOUT_NAME)) if not in_process else ""
            logger.error(
                f"[{index}/{len(runs)}] {name}: failed ({why}); rerun the sweep to resume it.\n{tail}"
            )
            failed.append(name)
        if after_each is not None:
            after_each(run)
    return {"finished": done, "ran": ran, "failed": failed}
