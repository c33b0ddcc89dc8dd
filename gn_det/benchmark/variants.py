"""The benchmarked models: one Mask R-CNN with a 4conv1fc box head, four ways to normalize.

Everything but normalization is the same in every variant (config keys in ``COMMON_OVERRIDES``):
ResNet-50 with the stride in the 3x3 conv (``STRIDE_IN_1X1: False``, as Detectron2's GN configs),
stem and res2 frozen (``FREEZE_AT: 2``, Detectron2's default), FPN, Detectron2's RPN head
(no norm), box head 4 convs + 1 fc, mask head 4 convs, random initialization. The architecture
can instead be the embedded R18-FPN (``ARCHITECTURES``): the widths of
``configs/Synthetic/Base-Shapes-RCNN-FPN.yaml``, the small model of the CPU main job.
"""
from dataclasses import dataclass
from typing import Dict, Tuple

from detectron2 import model_zoo
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import (
    BACKBONE_REGISTRY,
    ROI_BOX_HEAD_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
)
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY

from gn_det.config import add_gn_config, set_config_value

from .workload import WorkloadSpec

__all__ = [
    "Variant",
    "VARIANTS",
    "COMMON_OVERRIDES",
    "BASE_CONFIG",
    "ARCHITECTURES",
    "check_variant_available",
    "build_variant_cfg",
]

# Detectron2's Mask R-CNN R50-FPN config: the common base of all variants.
BASE_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"

COMMON_OVERRIDES: Tuple[Tuple[str, object], ...] = (
    ("MODEL.WEIGHTS", ""),
    ("MODEL.MASK_ON", True),
    ("MODEL.RESNETS.DEPTH", 50),
    ("MODEL.RESNETS.STRIDE_IN_1X1", False),
    ("MODEL.BACKBONE.FREEZE_AT", 2),
    ("MODEL.ROI_BOX_HEAD.NUM_CONV", 4),
    ("MODEL.ROI_BOX_HEAD.NUM_FC", 1),
    # The fixed-workload stand-ins for Detectron2's RPN and StandardROIHeads (fixed_workload.py).
    ("MODEL.PROPOSAL_GENERATOR.NAME", "FixedProposalsRPN"),
    ("MODEL.ROI_HEADS.NAME", "FixedDetectionsROIHeads"),
    # LR 0: the optimizer does all its arithmetic, but the weights, hence the work, stay the same
    # at every step (and an untrained model fed one batch cannot diverge).
    ("SOLVER.BASE_LR", 0.0),
)

# The model sizes a benchmark can run; every variant gets the same one. "R18-FPN" is the embedded
# model's (configs/Synthetic/Base-Shapes-RCNN-FPN.yaml; a test keeps the two the same): ResNet-18
# (basic blocks, so res2 has 64 channels), FPN and heads 64 wide, a 256-wide box fc.
ARCHITECTURES: Dict[str, Tuple[Tuple[str, object], ...]] = {
    "R50-FPN": (),
    "R18-FPN": (
        ("MODEL.RESNETS.DEPTH", 18),
        ("MODEL.RESNETS.RES2_OUT_CHANNELS", 64),
        ("MODEL.FPN.OUT_CHANNELS", 64),
        ("MODEL.ROI_BOX_HEAD.CONV_DIM", 64),
        ("MODEL.ROI_BOX_HEAD.FC_DIM", 256),
        ("MODEL.ROI_MASK_HEAD.CONV_DIM", 64),
    ),
}

_D2_NAMES = (
    ("MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone"),
    ("MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead"),
    ("MODEL.ROI_MASK_HEAD.NAME", "MaskRCNNConvUpsampleHead"),
    ("MODEL.RPN.HEAD_NAME", "StandardRPNHead"),
)
_GN_DET_NAMES = (
    ("MODEL.BACKBONE.NAME", "build_gn_resnet_fpn_backbone"),
    ("MODEL.ROI_BOX_HEAD.NAME", "GNConvFCHead"),
    ("MODEL.ROI_MASK_HEAD.NAME", "GNMaskRCNNConvUpsampleHead"),
    ("MODEL.RPN.HEAD_NAME", "GNRPNHead"),
    ("MODEL.RPN.NORM", ""),  # same RPN head architecture as Detectron2's: no norm
)
_GN_NORMS = (
    ("MODEL.RESNETS.NORM", "GN"),
    ("MODEL.FPN.NORM", "GN"),
    ("MODEL.ROI_BOX_HEAD.NORM", "GN"),
    ("MODEL.ROI_MASK_HEAD.NORM", "GN"),
)

# Where each registered name must be found.
_REGISTRIES = {
    "MODEL.BACKBONE.NAME": BACKBONE_REGISTRY,
    "MODEL.ROI_BOX_HEAD.NAME": ROI_BOX_HEAD_REGISTRY,
    "MODEL.ROI_MASK_HEAD.NAME": ROI_MASK_HEAD_REGISTRY,
    "MODEL.RPN.HEAD_NAME": RPN_HEAD_REGISTRY,
}


@dataclass(frozen=True)
class Variant:
    """One benchmarked model: a short key ("a"), a name for tables and its config overrides."""

    key: str
    name: str
    description: str
    overrides: Tuple[Tuple[str, object], ...]

    def config_dict(self) -> Dict[str, object]:
        return dict(self.overrides)


VARIANTS: Dict[str, Variant] = {
    v.key: v
    for v in (
        Variant(
            "a",
            "BN*",
            "FrozenBN backbone, no norm in FPN and heads (Detectron2's modules)",
            _D2_NAMES
            + (
                ("MODEL.RESNETS.NORM", "FrozenBN"),
                ("MODEL.FPN.NORM", ""),
                ("MODEL.ROI_BOX_HEAD.NORM", ""),
                ("MODEL.ROI_MASK_HEAD.NORM", ""),
            ),
        ),
        Variant(
            "b",
            "Detectron2 GN",
            'Detectron2\'s built-in GN: norm "GN" in backbone, FPN, box and mask heads',
            _D2_NAMES + _GN_NORMS,
        ),
        Variant(
            "c",
            "gn_det GN",
            "gn_det's registered backbone and heads, GN in backbone, FPN, box and mask heads",
            _GN_DET_NAMES + _GN_NORMS + (("MODEL.GN.WEIGHT_STD", False),),
        ),
        Variant(
            "d",
            "gn_det GN+WS",
            "as (c), with Weight Standardization of every normed conv",
            _GN_DET_NAMES + _GN_NORMS + (("MODEL.GN.WEIGHT_STD", True),),
        ),
    )
}


def check_variant_available(key: str) -> None:
    """Raise KeyError if ``key`` is not a variant, or if its registered names are missing."""
    if key not in VARIANTS:
        raise KeyError(f"Unknown benchmark variant {key!r}; valid: {', '.join(VARIANTS)}.")
    variant = VARIANTS[key]
    missing = [
        f"{cfg_key}={name!r}"
        for cfg_key, name in variant.overrides
        if cfg_key in _REGISTRIES and name not in _REGISTRIES[cfg_key]
    ]
    if missing:
        raise KeyError(
            f"Variant ({variant.key}) {variant.name} needs names that are not registered: "
            f"{', '.join(missing)}. They come from gn_det.modeling (import gn_det registers them); "
            "if this checkout has no gn_det.modeling yet, leave the variant out (--variants a b)."
        )


def build_variant_cfg(
    key: str, spec: WorkloadSpec, device: str = "cpu", freeze_at: int = 2, arch: str = "R50-FPN"
) -> CfgNode:
    """The frozen Detectron2 config of variant ``key`` for the workload ``spec``.

    ``freeze_at``: ``MODEL.BACKBONE.FREEZE_AT`` (2, Detectron2's default, freezes the stem and
    res2, whose GN layers see the largest tensors; 0 trains every stage, as from scratch).
    ``arch``: a key of ``ARCHITECTURES``.

    Raises KeyError for an unknown key or architecture (listing the valid ones) or when the
    variant's registered names are missing.
    """
    check_variant_available(key)
    if arch not in ARCHITECTURES:
        raise KeyError(f"Unknown benchmark architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}.")
    if isinstance(freeze_at, bool) or not isinstance(freeze_at, int) or not 0 <= freeze_at <= 5:
        raise ValueError(f"freeze_at must be an integer 0..5 (MODEL.BACKBONE.FREEZE_AT), got {freeze_at!r}.")
    variant = VARIANTS[key]
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(BASE_CONFIG))
    workload_keys = (
        ("MODEL.DEVICE", device),
        ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", spec.rois_per_image),
        ("MODEL.ROI_HEADS.POSITIVE_FRACTION", spec.positive_fraction),
        ("MODEL.ROI_HEADS.NUM_CLASSES", spec.num_classes),
        ("MODEL.RPN.POST_NMS_TOPK_TRAIN", spec.proposals_per_image),
        ("MODEL.RPN.POST_NMS_TOPK_TEST", spec.proposals_per_image),
        ("TEST.DETECTIONS_PER_IMAGE", spec.detections_per_image),
        ("SOLVER.IMS_PER_BATCH", spec.images_per_batch),
        ("MODEL.BACKBONE.FREEZE_AT", freeze_at),
    )
    for dotted, value in COMMON_OVERRIDES + ARCHITECTURES[arch] + variant.overrides + workload_keys:
        set_config_value(cfg, dotted, value, what="Benchmark override")
    cfg.freeze()
    return cfg
