"""Models, images and the gn_det-free subprocess shared by the export tests."""

import json
import os
import site
import subprocess
import sys

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from gn_det import add_gn_config
from modeling_helpers import (
    MASK_RCNN_C4_YAML,
    RETINANET_YAML,
    narrow,
    set_norm_everywhere,
    use_gn_det_names,
    zoo_cfg,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standalone_run.py")
SYNTHETIC = os.path.join(REPO, "configs", "Synthetic")


def synthetic_cfg(yaml: str = "mask_rcnn_R_18_FPN_gn_scratch.yaml", opts=()):
    """The main job's R18-FPN Mask R-CNN family (configs/Synthetic), small test sizes."""
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(os.path.join(SYNTHETIC, yaml))
    cfg.merge_from_list(list(opts))
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    return cfg


def zoo_gn_cfg(yaml: str):
    return set_norm_everywhere(narrow(use_gn_det_names(zoo_cfg(yaml))), "GN-groups")


def _with_norm(choice, opts=()):
    def build():
        return set_norm_everywhere(synthetic_cfg(opts=opts), choice)

    return build


# Every architecture the exports must cover: name -> config builder.
ARCHITECTURES = {
    "GN fused": lambda: synthetic_cfg(),
    "GN unfused": lambda: synthetic_cfg(opts=["MODEL.GN.FUSED", False]),
    "GN+WS": lambda: synthetic_cfg("mask_rcnn_R_18_FPN_gn_ws_scratch.yaml"),
    "LN": _with_norm("LN"),
    "IN": _with_norm("IN"),
    "GN 16 channels/group": _with_norm("GN-channels"),
    "RPN-head GN": lambda: synthetic_cfg(opts=["MODEL.RPN.NORM", "GN"]),
    "R50-C4": lambda: zoo_gn_cfg(MASK_RCNN_C4_YAML),
    "RetinaNet": lambda: zoo_gn_cfg(RETINANET_YAML),
}


def spread_predictions(model, seed: int = 0):
    """Give the prediction layers weights that separate scores.

    A freshly initialized detector scores every box about the same (tiny predictor weights), so
    which boxes survive NMS and the top-k cut turns on float32 rounding; with spread scores the
    comparison checks the network, not the tie-breaking."""
    generator = torch.Generator().manual_seed(seed)
    keys = ("cls_score", "objectness_logits", "bbox_pred", "anchor_deltas", "predictor")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in keys):
                scale = 2.0 / p[0].numel() ** 0.5 if p.dim() > 1 else 0.5
                p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return model


def build_eval_model(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return spread_predictions(build_model(cfg), seed).eval()


def image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A (3, H, W) float image in 0-255 with smooth structure (random blobs upsampled)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(height // 16, 1), max(width // 16, 1), generator=generator)
    return (
        torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0] * 255
    ).contiguous()


def run_without_gn_det(jobs, workdir: str) -> dict:
    """Run ``jobs`` (see standalone_run.py) in ``python -I -S``; returns what that process could
    import. Raises with its stderr if it fails."""
    job_file = os.path.join(workdir, "jobs.json")
    with open(job_file, "w") as f:
        json.dump({"site_packages": site.getsitepackages(), "jobs": jobs}, f)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [sys.executable, "-I", "-S", RUNNER, job_file], cwd=workdir, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"standalone run failed ({done.returncode}):\n{done.stderr[-4000:]}")
    with open(job_file + ".env.json") as f:
        return json.load(f)
