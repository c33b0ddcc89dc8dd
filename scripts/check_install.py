#!/usr/bin/env python3
"""Check gn_det as a user gets it from a wheel, away from this repository.

    python3 scripts/check_install.py                  # the wheel with its compiled CPU kernels
    python3 scripts/check_install.py --no-cpu-kernels # a pure-Python wheel (no compiler run)

Steps (each timed; the first failure stops with its output):
1. copy the files git tracks into a temporary directory and build the wheel there with
   ``pip wheel --no-deps --no-build-isolation`` (the repository itself gets no build/ or egg-info);
2. check the wheel holds every config ``gn_det.model_zoo.list_configs()`` names and the console
   scripts, and no tests/ or tools/;
3. install it (non-editable, ``--no-deps --no-index``) into a fresh venv made with
   ``--system-site-packages``, so it uses this Python's torch and detectron2;
4. from an empty directory, with no PYTHONPATH, in the venv's Python: gn_det imports from the venv
   (not from an editable checkout this Python may also have), ``get_config`` of a YAML and of a
   ``.py`` config, both models build on CPU with the same state_dict, the sweep's default config
   exists, the CPU kernels are there or not as built;
5. ``gn-det-train --help`` runs, and every gn-det-* command is installed.
Exit status 0 when every step passed. tests/test_install.py runs it with --no-cpu-kernels.
"""
import argparse
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The commands, as setup.py reads them (gn_det/cli/__init__.py is plain data: no gn_det import).
CONSOLE_SCRIPTS = runpy.run_path(str(REPO / "gn_det" / "cli" / "__init__.py"))["CONSOLE_SCRIPTS"]

# Run inside the venv, from an empty directory. Prints "ok: ..." per check.
IN_VENV = r"""
import os, sys, torch
venv = sys.argv[1]
# An editable gn_det in the base site-packages (its .pth runs in a --system-site-packages venv)
# installs a finder that serves gn_det's submodules missing from the wheel (e.g. a _C built in
# the checkout) from the checkout: drop it, so everything below comes from the wheel.
for finder in [f for f in sys.meta_path if "gn_det" in getattr(sys.modules.get(f.__module__), "MAPPING", {})]:
    sys.meta_path.remove(finder)
    print("ok: removed the editable install's finder", finder.__module__, "->", sys.modules[finder.__module__].MAPPING)
import gn_det
from gn_det import model_zoo
assert gn_det.__file__.startswith(venv), f"gn_det imported from {gn_det.__file__}, not from the venv {venv}"
print("ok: gn_det from", os.path.dirname(gn_det.__file__))
assert str(model_zoo.configs_dir()).startswith(venv), model_zoo.configs_dir()
print("ok:", len(model_zoo.list_configs()), "configs installed")
from detectron2.config import instantiate
from detectron2.modeling import build_model
yaml_cfg = model_zoo.get_config("Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml")
yaml_cfg.MODEL.DEVICE = "cpu"
py_cfg = model_zoo.get_config("configs/Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py")
from_yaml, from_py = build_model(yaml_cfg), instantiate(py_cfg.model)
shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}
assert shapes(from_yaml) == shapes(from_py)
print("ok: YAML and .py configs build the same model on CPU,", len(shapes(from_py)), "tensors")
from gn_det.sweep.cli import DEFAULT_CONFIG
assert os.path.isfile(DEFAULT_CONFIG) and DEFAULT_CONFIG.startswith(venv), DEFAULT_CONFIG
print("ok: the sweep's default config is installed")
from gn_det.layers import cpu_kernels_available
assert cpu_kernels_available() == (sys.argv[2] == "1"), cpu_kernels_available()
print("ok: CPU kernels", "built" if cpu_kernels_available() else "not built (as asked)")
"""


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        sys.exit(f"FAILED: {' '.join(map(str, cmd))}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _clean_env(**extra):
    """No PYTHONPATH (a checkout on it would shadow the install), no user site-packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", **extra)
    return env


def copy_tracked_files(destination: Path) -> None:
    files = _run(["git", "-C", str(REPO), "ls-files", "-z"]).stdout.split("\0")
    for name in filter(None, files):
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # configs -> gn_det/configs
            os.symlink(os.readlink(source), target)
        elif source.is_file():  # a file deleted in the work tree is not copied
            shutil.copy2(source, target)


def check_wheel(wheel: Path, src: Path) -> dict:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = src / "gn_det" / "configs"  # what gn_det.model_zoo.list_configs() lists
    import_list = [p.relative_to(configs).as_posix() for p in configs.rglob("*") if p.suffix in (".yaml", ".py")]
    missing = [c for c in import_list if f"gn_det/configs/{c}" not in names]
    assert not missing, f"configs missing from the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "tools/", "configs/"))], "the wheel holds repository files"
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert all(f"{cmd} = {target}" in entry_points for cmd, target in CONSOLE_SCRIPTS.items()), entry_points
    print(f"ok: the wheel holds {len(import_list)} configs and {len(CONSOLE_SCRIPTS)} commands "
          f"({len(names)} files, {wheel.stat().st_size / 2**20:.1f} MiB)")
    return {
        "wheel": wheel.name,
        "files": len(names),
        "mib": round(wheel.stat().st_size / 2**20, 2),
        "configs_yaml": sum(c.endswith(".yaml") for c in import_list),
        "configs_py": sum(c.endswith(".py") for c in import_list),
        "python_modules": sum(n.startswith("gn_det/") and n.endswith(".py") and not n.startswith("gn_det/configs/")
                              for n in names),
        "compiled": sorted(n for n in names if n.endswith(".so")),
        "commands": sorted(CONSOLE_SCRIPTS),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-cpu-kernels", action="store_true",
                        help="build without the C++ kernels (GN_DET_NO_CPU_KERNELS=1): no compiler run")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a removed temp dir)")
    parser.add_argument("--json", metavar="PATH", help="also write the wheel's contents and the timings here")
    args = parser.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="gn_det_install_"))
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    try:
        start = time.perf_counter()
        src, wheels, venv, empty = work / "src", work / "wheels", work / "venv", work / "empty"
        empty.mkdir(exist_ok=True)
        copy_tracked_files(src)
        build_env = dict(os.environ, GN_DET_NO_CPU_KERNELS="1" if args.no_cpu_kernels else "0")
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
             env=build_env)
        [wheel] = wheels.glob("gn_det-*.whl")
        timings["build the wheel"] = time.perf_counter() - start
        print(f"ok: built {wheel.name}")
        contents = check_wheel(wheel, src)

        start = time.perf_counter()
        _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
        python = venv / "bin" / "python"
        # --ignore-installed: this Python may have gn_det installed (editable); the venv gets its own.
        _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
              "--ignore-installed", str(wheel)])
        timings["venv + install"] = time.perf_counter() - start

        start = time.perf_counter()
        result = _run([str(python), "-c", IN_VENV, str(venv.resolve()), "0" if args.no_cpu_kernels else "1"],
                      cwd=empty, env=_clean_env())
        print(result.stdout, end="")
        timings["configs and models in the venv"] = time.perf_counter() - start

        start = time.perf_counter()
        missing = [cmd for cmd in CONSOLE_SCRIPTS if not (venv / "bin" / cmd).is_file()]
        assert not missing, f"commands not installed: {missing}"
        result = _run([str(venv / "bin" / "gn-det-train"), "--help"], cwd=empty, env=_clean_env())
        assert "--config-file" in result.stdout and "gn-det-train" in result.stdout, result.stdout
        timings["gn-det-train --help"] = time.perf_counter() - start
        print(f"ok: {len(CONSOLE_SCRIPTS)} gn-det-* commands installed; gn-det-train --help runs")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    if args.json:
        record = {"cpu_kernels": not args.no_cpu_kernels, "wheel": contents, "load_average_at_end": os.getloadavg(),
                  "timings_s": {k: round(v, 1) for k, v in timings.items()}}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    print("OK: the installed gn_det serves its configs and commands from any directory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
