"""2026-12-06: one checkpoint exported four ways by tools/export_model.py (torch.export .pt2, ONNX
through the torch.export-based exporter, TorchScript tracing, the TorchScript-based ONNX
exporter), each verified by the tool against the eager model; plus the time to load each artifact
in a fresh process and the machine's load average; then the four artifacts and the eager model
timed side by side (interleaved rounds in one process, one thread, the same images), since the
load of the shared machine changes between the tool runs. Writes the JSON named by --output.

    python3 tools/train_net.py --config-file configs/Synthetic/mask_rcnn_R_18_FPN_gn_scratch.yaml \
        SOLVER.MAX_ITER 20 OUTPUT_DIR /tmp/run
    python3 docs/results/2026-12-06_torch_export.py --weights /tmp/run/model_final.pth \
        --work /tmp/exports --output docs/results/2026-12-06_torch_export.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXPORTS = {
    "pt2 (torch.export)": [],
    "onnx (torch.export-based exporter)": ["--format", "onnx"],
    "torchscript (tracing)": ["--format", "torchscript"],
    "onnx (TorchScript-based exporter, opset 17)": ["--format", "onnx", "--export-method", "tracing"],
}

# Loads an artifact the way a deployment does (no gn_det import) and prints the seconds it took.
LOAD = r"""
import sys, time
import torch, torchvision
path, fmt = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if fmt == "pt2":
    torch.export.load(path).module()
elif fmt == "onnx":
    import onnxruntime
    onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
else:
    torch.jit.load(path)
print(time.perf_counter() - start)
"""


def _folder(work: str, name: str) -> str:
    return os.path.join(work, name.split(" ")[0] + ("_legacy" if "TorchScript-based" in name else ""))


def load_average() -> float:
    return os.getloadavg()[0]


def side_by_side(weights: str, work: str, exports: dict, num_images: int, rounds: int) -> dict:
    """Median ms per image of the eager model and of each artifact, measured in interleaved
    rounds (each round: one pass over the images per runner, in a rotating order)."""
    import numpy as np
    import torch

    sys.path.insert(0, REPO)
    import gn_det  # noqa: F401
    from detectron2.data import DatasetCatalog

    from gn_det.engine.setup import config_file_for_weights
    from gn_det.export.cli import load_model, sample_images
    from gn_det.export.verify import load_exported
    from gn_det.export.exporters import tracing_adapter
    from detectron2.config import get_cfg
    from gn_det import add_gn_config

    torch.set_num_threads(1)
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(config_file_for_weights(weights))
    cfg.MODEL.DEVICE = "cpu"
    model = load_model(cfg, weights)
    DatasetCatalog.get(cfg.DATASETS.TEST[0])
    images = sample_images(cfg, [], cfg.DATASETS.TEST[0], num_images)
    adapter = tracing_adapter(model, images[0]).eval()
    runners = {"eager (gn_det, fused GN)": adapter}
    for name, info in exports.items():
        runners[name] = load_exported(os.path.join(_folder(work, name), info["artifact"]), info["format"])
    samples = {name: [] for name in runners}
    names = list(runners)
    with torch.no_grad():
        for name in names:  # warm-up pass (graph optimizations on the first call)
            for image in images:
                runners[name](image)
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                for image in images:
                    runners[name](image)
                samples[name].append((time.perf_counter() - start) * 1000 / len(images))
    return {
        "rounds": rounds,
        "images": [list(im.shape) for im in images],
        "median_ms_per_image": {n: float(np.median(v)) for n, v in samples.items()},
        "load_average_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--work", required=True, help="folder for the four exports")
    parser.add_argument("--output", required=True, help="JSON to write")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7, help="side-by-side timing rounds")
    parser.add_argument("--timing-only", action="store_true", help="re-time the exports in --output")
    args = parser.parse_args()
    if args.timing_only:
        with open(args.output) as f:
            record = json.load(f)
        before = load_average()
        record["side_by_side"] = side_by_side(args.weights, args.work, record["exports"], args.num_images, args.rounds)
        record["side_by_side"]["load_average_before"] = before
        with open(args.output, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        print(json.dumps(record["side_by_side"], indent=1))
        return
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    results = {}
    for name, flags in EXPORTS.items():
        out = _folder(args.work, name)
        before = load_average()
        done = subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "export_model.py"), "--weights", args.weights,
             "--num-images", str(args.num_images), "--repeats", str(args.repeats), "--output", out, *flags],
            env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        with open(os.path.join(out, "export.json")) as f:
            info = json.load(f)
        artifact = os.path.join(out, info["artifact"])
        loaded = subprocess.run(
            [sys.executable, "-c", LOAD, artifact, info["format"]],
            env=dict(env, PYTHONPATH=""), capture_output=True, text=True, check=True, cwd=args.work,
        )
        info["load_seconds_fresh_process"] = float(loaded.stdout.strip().splitlines()[-1])
        info["load_average"] = {"before": before, "after": load_average()}
        info["tool_stdout"] = [line for line in done.stdout.splitlines() if line.startswith("[export]")]
        results[name] = info
        print(name, json.dumps(info["verification"]["max_abs_difference"]), info["tool_stdout"][-2:], flush=True)
    record = {
        "date": "2026-12-06",
        "weights": os.path.abspath(args.weights),
        "threads": 1,
        "cpu_count": os.cpu_count(),
        "measured_at": time.strftime("%H:%M UTC", time.gmtime()),
        "exports": results,
    }
    with open(args.output, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
