"""2026-12-06: what each of gn_det.export's torch.export patches is for, shown by leaving it out.

Exports the main job's model family (Synthetic R18-FPN Mask R-CNN, fused GN, random init with the
tests' spread predictors) with symbolic image size, once with every patch and once per patch
with that one left out, and records for each run the error torch.export raised and the last
Detectron2 / torchvision line in its traceback. RetinaNet is exported too (it reaches NMS with
a data-dependent number of boxes first). Writes the JSON named by --output.

    python3 docs/results/2026-12-06_torch_export_patches.py --output docs/results/2026-12-06_torch_export_patches.json
"""

import argparse
import json
import os
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "export")]

import torch  # noqa: E402

from export_helpers import ARCHITECTURES, build_eval_model, image  # noqa: E402
from gn_det.export import PATCHES, tracing_adapter  # noqa: E402
from gn_det.export.export_patches import torch_export_patches  # noqa: E402
from gn_det.export.programs import _dynamic_shapes  # noqa: E402
from gn_det.export.standard_modules import standard_model  # noqa: E402


def _third_party_line(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    theirs = [f for f in frames if "/detectron2/" in f.filename or "/torchvision/" in f.filename]
    if not theirs:
        return ""
    f = theirs[-1]
    short = f.filename[f.filename.index("/detectron2/") + 1 :] if "/detectron2/" in f.filename else (
        f.filename[f.filename.index("/torchvision/") + 1 :]
    )
    return f"{short}:{f.lineno} in {f.name}: {f.line}"


def export_once(model, sample, skip):
    adapter = tracing_adapter(standard_model(model), sample).eval()
    start = time.perf_counter()
    try:
        with torch.no_grad(), torch_export_patches(skip=skip):
            torch.export.export(adapter, (sample,), dynamic_shapes=_dynamic_shapes(model, sample), strict=False)
    except Exception as e:  # the point: record what torch.export raises
        message = str(e).strip().splitlines()[0]
        return {"exported": False, "error": f"{type(e).__name__}: {message}", "line": _third_party_line(e),
                "seconds": time.perf_counter() - start}
    return {"exported": True, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = {}
    for arch, names in (("GN fused", [None] + [p.name for p in PATCHES]), ("RetinaNet", [None, "batched NMS"])):
        model = build_eval_model(ARCHITECTURES[arch]())
        side = 96 if arch != "RetinaNet" else 160
        sample = image(side, side)
        for name in names:
            key = f"{arch}: " + ("all patches" if name is None else f"without '{name}'")
            runs[key] = export_once(model, sample, [] if name is None else [name])
            print(key, json.dumps(runs[key]), flush=True)
    record = {"date": "2026-12-06", "torch": torch.__version__, "load_average_after": os.getloadavg()[0], "runs": runs}
    with open(args.output, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
