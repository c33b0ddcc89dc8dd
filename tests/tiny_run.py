"""Helpers for the tools tests: tiny shapes datasets on disk and a tiny, fast training config.

Not a test module; imported by tests/tools/ and tests/evaluation/.
"""
import argparse
import json
import os
import subprocess
import sys

from gn_det.data import ShapesSpec, generate_shapes_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(REPO, "configs", "Synthetic", "mask_rcnn_R_18_FPN_gn_scratch.yaml")

# 64 px images with 1-3 shapes: a few training iterations take seconds on a CPU.
TINY_SPEC = dict(height=64, width=64, min_shapes=1, max_shapes=3, min_radius=7, max_radius=22, min_visible_pixels=20)


def make_split(root, name, num_images, seed, classes=None):
    """Generate a tiny split; returns (json path, image dir)."""
    spec = ShapesSpec(num_images=num_images, seed=seed, **TINY_SPEC, **({"classes": classes} if classes else {}))
    directory = generate_shapes_split(str(root), name, spec)
    return os.path.join(directory, "annotations.json"), os.path.join(directory, "images")


def remap_category_ids(json_file, new_ids, out_file):
    """Copy a COCO json with its category ids replaced (old id i+1 -> new_ids[i])."""
    with open(json_file) as f:
        coco = json.load(f)
    mapping = {c["id"]: new_ids[i] for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    for c in coco["categories"]:
        c["id"] = mapping[c["id"]]
    for a in coco["annotations"]:
        a["category_id"] = mapping[a["category_id"]]
    with open(out_file, "w") as f:
        json.dump(coco, f)
    return out_file


def tiny_opts(output_dir, train="tiny_train", test="tiny_val", max_iter=4, checkpoint_period=2, steps=(3,)):
    """Config overrides that make the synthetic GN config tiny and fast."""
    return [
        "OUTPUT_DIR", str(output_dir),
        "DATASETS.TRAIN", repr((train,)),
        "DATASETS.TEST", repr((test,)) if test else "()",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.01", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.MAX_ITER", str(max_iter), "SOLVER.STEPS", repr(tuple(steps)),
        "SOLVER.CHECKPOINT_PERIOD", str(checkpoint_period),
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
        "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
        "DATALOADER.NUM_WORKERS", "0",
    ]


def train_args(datasets, opts, *, resume=False, eval_only=False, config_file=BASE_CONFIG):
    """An argparse Namespace as tools/train_net.py's parser makes it."""
    return argparse.Namespace(
        config_file=config_file, resume=resume, eval_only=eval_only, num_gpus=1, num_machines=1,
        machine_rank=0, dist_url="auto", opts=list(opts), dataset=[list(d) for d in datasets],
    )


def run_tool(script, *args, timeout=600):
    """Run tools/<script> in a subprocess with this checkout first on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
    )
