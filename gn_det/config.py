"""gn_det's config keys, added to a Detectron2 CfgNode by ``add_gn_config`` (Detectron2's
``add_<project>_config`` convention). Every key is listed in README.md, "Config keys".

Which norm a component uses is read from Detectron2's own key for it (``MODEL.RESNETS.NORM``,
``MODEL.FPN.NORM``, ...), plus ``MODEL.RPN.NORM`` that Detectron2 lacks. How GN layers are built
is read from ``MODEL.GN``: global settings, and per-component overrides where ``None`` inherits.
"""
from detectron2.config import CfgNode as CN

from .layers.norm_factory import GNSettings, build_norm_factory

__all__ = [
    "add_gn_config",
    "COMPONENT_NORM_KEYS",
    "gn_settings",
    "component_norm",
    "config_value",
    "set_config_value",
]

# Component (the name of its override node under MODEL.GN) -> the config key naming its norm.
COMPONENT_NORM_KEYS = {
    "BACKBONE": "MODEL.RESNETS.NORM",
    "FPN": "MODEL.FPN.NORM",
    "RPN_HEAD": "MODEL.RPN.NORM",
    "BOX_HEAD": "MODEL.ROI_BOX_HEAD.NORM",
    "MASK_HEAD": "MODEL.ROI_MASK_HEAD.NORM",
    "RETINANET_HEAD": "MODEL.RETINANET.NORM",
}
_OVERRIDABLE = ("NUM_GROUPS", "CHANNELS_PER_GROUP", "EPS", "WEIGHT_STD", "FUSED")


def add_gn_config(cfg: CN) -> CN:
    """Add gn_det's keys, with the paper's defaults, to ``cfg`` (in place; also returned)."""
    _C = cfg
    # Norm of GNRPNHead's shared 3x3 conv; "" keeps Detectron2's RPN head behaviour (no norm).
    _C.MODEL.RPN.NORM = ""
    # Zero-init the last norm's gamma in each residual block (helps training from scratch).
    _C.MODEL.RESNETS.ZERO_INIT_RESIDUAL = False

    _C.MODEL.GN = CN()
    # Groups per GN layer (paper: 32). Ignored where CHANNELS_PER_GROUP > 0.
    _C.MODEL.GN.NUM_GROUPS = 32
    # > 0: a fixed number of channels per group instead of a fixed group count (paper's ablation).
    _C.MODEL.GN.CHANNELS_PER_GROUP = 0
    # Added to the variance in GN, LN and IN.
    _C.MODEL.GN.EPS = 1e-5
    # Weight Standardization of every conv that carries a norm (GN+WS).
    _C.MODEL.GN.WEIGHT_STD = False
    # Added to the weight variance in WS.
    _C.MODEL.GN.WS_EPS = 1e-5
    # Run each GN and its ReLU (or no activation) fused, keeping only GN's input and statistics
    # for backward (Triton kernels on CUDA). False: the plain nn.GroupNorm reference path.
    _C.MODEL.GN.FUSED = True
    # Per-component overrides of NUM_GROUPS, CHANNELS_PER_GROUP, EPS, WEIGHT_STD and FUSED;
    # None inherits the global value.
    for component in COMPONENT_NORM_KEYS:
        _C.MODEL.GN[component] = CN({key: None for key in _OVERRIDABLE})

    # COCO evaluation (gn_det.evaluation.coco_eval_impl). IMPL: "gn_det" (Detectron2's C++
    # COCOeval with gn_det's fast path), "detectron2" (COCOeval_opt) or "pycocotools" (the
    # official COCOeval); all give pycocotools' numbers. WORKERS: processes for "gn_det" (0: half
    # the cores, at most 8, and 1 below 4 cores; always 1 for small result sets).
    _C.TEST.COCO_EVAL = CN()
    _C.TEST.COCO_EVAL.IMPL = "gn_det"
    _C.TEST.COCO_EVAL.WORKERS = 0
    return cfg


def config_value(cfg: CN, dotted: str):
    """The value of the config key ``dotted`` (e.g. ``"MODEL.RESNETS.NORM"``)."""
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def set_config_value(cfg: CN, dotted: str, value, what: str = "Config key") -> None:
    """Set the existing config key ``dotted``; a KeyError names it if the config has no such key
    (``what`` says whose key it was, for the message)."""
    *parents, leaf = dotted.split(".")
    node = config_value(cfg, ".".join(parents)) if parents else cfg
    if leaf not in node:
        raise KeyError(f"{what} {dotted} is not a key of this Detectron2/gn_det config.")
    node[leaf] = value


def gn_settings(cfg: CN, component: str) -> GNSettings:
    """The GN settings of ``component`` (a key of COMPONENT_NORM_KEYS), overrides applied."""
    if component not in COMPONENT_NORM_KEYS:
        raise ValueError(
            f"Unknown gn_det component {component!r}; valid: {', '.join(COMPONENT_NORM_KEYS)}."
        )
    if "GN" not in cfg.MODEL:
        raise KeyError("cfg has no MODEL.GN: call gn_det.add_gn_config(cfg) before merging YAMLs.")
    g = cfg.MODEL.GN
    base = GNSettings(
        num_groups=g.NUM_GROUPS,
        channels_per_group=g.CHANNELS_PER_GROUP,
        eps=g.EPS,
        weight_std=g.WEIGHT_STD,
        ws_eps=g.WS_EPS,
        fused=g.FUSED,
    )
    o = g[component]
    return base.with_overrides(
        num_groups=o.NUM_GROUPS,
        channels_per_group=o.CHANNELS_PER_GROUP,
        eps=o.EPS,
        weight_std=o.WEIGHT_STD,
        fused=o.FUSED,
    )


def component_norm(cfg: CN, component: str):
    """``(norm, settings)`` for a component: ``norm`` is ``""`` or a ``NormFactory`` to hand to
    Detectron2's modules; ``settings.weight_std`` says whether to standardize the normed convs."""
    settings = gn_settings(cfg, component)
    key = COMPONENT_NORM_KEYS[component]
    norm = build_norm_factory(config_value(cfg, key), settings, component=key)
    return norm, settings
