"""Semantic checks of a merged config, run before anything is built for real.

``check_config`` reports every problem at once: registered names (with "did you mean"), the
ResNet rules and the batch rule (their one copy, in ``modeling.resnet`` and ``batch_scaling``),
dataset names. Then the model is built on PyTorch's ``meta`` device (no memory, no weights), by
Detectron2's own ``build_model``: whatever the builders refuse (a GN group count that does not
divide a layer's channels, an unknown norm name, ...) is reported with the builder's own message,
instead of this module re-deriving each component's channel widths. The sources (YAML,
``_BASE_``, overrides) are checked and merged by ``config_sources``; its two names are also
importable from here.
"""

import difflib
import traceback
from typing import Dict, Iterable, List, Optional

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog

from ..batch_scaling import images_per_process
from ..modeling.resnet import resnet_config_problems
from .config_sources import check_config_sources, default_base_cfg
from .report import ValidationReport

__all__ = [
    "default_base_cfg",
    "check_config_sources",
    "check_config",
    "build_on_meta_device",
]

# Where a build error comes from, for the message: the innermost frame in these packages.
_OWN_CODE = ("/gn_det/", "/detectron2/")


def _registry_names(registry) -> List[str]:
    return sorted(name for name, _ in registry)


def _registered(registry, name: str):
    return registry.get(name) if name in registry else None


def _registry_display_name(registry) -> str:
    return getattr(registry, "_name", type(registry).__name__)  # fvcore keeps the name private


def _check_registered_name(
    report: ValidationReport, key: str, name: str, registry, extra_valid: Iterable[str] = ()
) -> object:
    extra_valid = list(extra_valid)
    if name in extra_valid:
        return None
    obj = _registered(registry, name)
    if obj is not None:
        return obj
    valid = _registry_names(registry) + extra_valid
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    report.add(
        "registry",
        f"config key {key}",
        f"{name!r} is not registered in Detectron2's {_registry_display_name(registry)} registry"
        + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
        + f" Registered: {', '.join(valid)}",
    )
    return None


def _from_gn_det(obj) -> bool:
    return obj is not None and getattr(obj, "__module__", "").startswith("gn_det")


def build_on_meta_device(cfg: CfgNode) -> Optional[str]:
    """Build the model of ``cfg`` with Detectron2's ``build_model`` on the ``meta`` device (shapes
    only: no memory, no initialization); the error a builder raises, with where, or None."""
    from detectron2.modeling import build_model

    meta_cfg = cfg.clone()
    meta_cfg.defrost()
    meta_cfg.MODEL.DEVICE = "meta"
    try:
        with torch.device("meta"):
            build_model(meta_cfg)
    except Exception as error:  # noqa: BLE001  whatever the builders refuse is the finding
        # The innermost constructor or builder it was in: the component that refused.
        frames = [f for f in traceback.extract_tb(error.__traceback__) if any(p in f.filename for p in _OWN_CODE)
                  and (f.name == "__init__" or f.name.startswith("build"))]
        where = ""
        if frames:
            frame = frames[-1]
            path = frame.filename.replace("\\", "/")
            path = path[path.rfind("/detectron2/") + 1:] if "/detectron2/" in path else path[path.rfind("/gn_det/") + 1:]
            where = f" (building {path}:{frame.lineno}, {frame.name})"
        message = f"{type(error).__name__}: {error}".strip()
        innermost = traceback.extract_tb(error.__traceback__)[-1]
        if isinstance(error, AssertionError) and innermost.line:  # a bare assert says little by itself
            message = f"AssertionError: `{innermost.line}` failed" + (f": {error}" if str(error) else "")
        if "must be divisible by num_groups" in message:
            message += ("; Detectron2's own 'GN' is 32 groups: use channel counts divisible by 32, or gn_det's "
                        "registered modules, whose groups MODEL.GN sets")
        return message + where
    return None


def _check_resnet(cfg: CfgNode, report: ValidationReport, owners: Dict[str, bool]) -> None:
    if "resnet" not in str(cfg.MODEL.BACKBONE.NAME).lower():
        return
    # Detectron2's own ResNet builds deformable bottlenecks; gn_det's does not.
    for key, message in resnet_config_problems(cfg, allow_deform=not owners.get("BACKBONE")):
        report.add("resnet", f"config key {key}", message)


def _check_names(cfg: CfgNode, report: ValidationReport) -> Dict[str, bool]:
    """Check registered names; return which components gn_det's own modules build (BACKBONE)."""
    from detectron2.modeling import (
        BACKBONE_REGISTRY,
        META_ARCH_REGISTRY,
        PROPOSAL_GENERATOR_REGISTRY,
        ROI_BOX_HEAD_REGISTRY,
        ROI_HEADS_REGISTRY,
        ROI_KEYPOINT_HEAD_REGISTRY,
        ROI_MASK_HEAD_REGISTRY,
        RPN_HEAD_REGISTRY,
        SEM_SEG_HEADS_REGISTRY,
    )
    from detectron2.modeling.meta_arch import GeneralizedRCNN, ProposalNetwork
    from detectron2.modeling.roi_heads import Res5ROIHeads

    m = cfg.MODEL
    owners: Dict[str, bool] = {}
    meta = _check_registered_name(report, "MODEL.META_ARCHITECTURE", m.META_ARCHITECTURE, META_ARCH_REGISTRY)
    backbone = _check_registered_name(report, "MODEL.BACKBONE.NAME", m.BACKBONE.NAME, BACKBONE_REGISTRY)
    owners["BACKBONE"] = _from_gn_det(backbone)
    uses_proposals = isinstance(meta, type) and issubclass(meta, (GeneralizedRCNN, ProposalNetwork))
    uses_roi_heads = isinstance(meta, type) and issubclass(meta, GeneralizedRCNN)
    if uses_proposals:
        generator = m.PROPOSAL_GENERATOR.NAME
        _check_registered_name(report, "MODEL.PROPOSAL_GENERATOR.NAME", generator, PROPOSAL_GENERATOR_REGISTRY,
                               ["PrecomputedProposals"])
        if generator in ("RPN", "RRPN"):
            _check_registered_name(report, "MODEL.RPN.HEAD_NAME", m.RPN.HEAD_NAME, RPN_HEAD_REGISTRY)
    roi_heads = None
    if uses_roi_heads:
        roi_heads = _check_registered_name(report, "MODEL.ROI_HEADS.NAME", m.ROI_HEADS.NAME, ROI_HEADS_REGISTRY)
    if roi_heads is not None:
        res5 = isinstance(roi_heads, type) and issubclass(roi_heads, Res5ROIHeads)
        if not res5:
            _check_registered_name(report, "MODEL.ROI_BOX_HEAD.NAME", m.ROI_BOX_HEAD.NAME, ROI_BOX_HEAD_REGISTRY)
        if m.MASK_ON:
            _check_registered_name(report, "MODEL.ROI_MASK_HEAD.NAME", m.ROI_MASK_HEAD.NAME, ROI_MASK_HEAD_REGISTRY)
        if m.KEYPOINT_ON:
            _check_registered_name(report, "MODEL.ROI_KEYPOINT_HEAD.NAME", m.ROI_KEYPOINT_HEAD.NAME,
                                   ROI_KEYPOINT_HEAD_REGISTRY)
        if res5 and _from_gn_det(roi_heads):
            owners["BACKBONE"] = True  # gn_det's Res5 ROI heads build res5 with the BACKBONE settings
    if m.META_ARCHITECTURE in ("SemanticSegmentor", "PanopticFPN"):
        _check_registered_name(report, "MODEL.SEM_SEG_HEAD.NAME", m.SEM_SEG_HEAD.NAME, SEM_SEG_HEADS_REGISTRY)
    return owners


def _check_batch(cfg: CfgNode, report: ValidationReport, num_processes: int) -> None:
    try:
        images_per_process(
            cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.REFERENCE_WORLD_SIZE, num_processes
        )
    except ValueError as e:
        report.add("batch-size", "config key SOLVER.IMS_PER_BATCH", str(e))


def _check_dataset_names(cfg: CfgNode, report: ValidationReport, train: bool = True,
                         known: Iterable[str] = ()) -> None:
    """Every dataset name is registered; ``known`` names were given with ``--dataset`` and
    their problems are reported already."""
    registered = DatasetCatalog.list() + list(known)
    groups = [("DATASETS.TRAIN", cfg.DATASETS.TRAIN)] if train else []
    groups.append(("DATASETS.TEST", cfg.DATASETS.TEST))
    for key, names in groups:
        for i, name in enumerate(names):
            if name in registered:
                continue
            close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
            report.add(
                "dataset-name",
                f"config key {key}[{i}]",
                f"dataset {name!r} is not registered"
                + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
                + f" Register it first (e.g. register_coco_instances or the tools' --dataset NAME JSON "
                f"IMAGE_DIR); {len(registered)} names are registered, e.g. "
                + ", ".join(sorted(registered)[:8]),
            )
    if train and not cfg.DATASETS.TRAIN:
        report.add(
            "dataset-name",
            "config key DATASETS.TRAIN",
            "is empty; name at least one registered training dataset",
        )


def check_config(
    cfg: CfgNode,
    num_processes: int = 1,
    report: Optional[ValidationReport] = None,
    training: bool = True,
    known_datasets: Iterable[str] = (),
) -> ValidationReport:
    """Semantic checks of a merged config; every problem found is added to the report.

    Args:
        num_processes: total training processes (``--num-gpus`` x ``--num-machines``).
        training: False for evaluation only (DATASETS.TRAIN and the batch size are not used).
        known_datasets: names given with ``--dataset`` (checked, and reported, already).
    """
    report = report if report is not None else ValidationReport()
    before = len(report.problems)
    owners = _check_names(cfg, report)
    _check_resnet(cfg, report, owners)
    if len(report.problems) == before:  # the build would stop at the same problem
        problem = build_on_meta_device(cfg)
        if problem:
            report.add("model-build", "config (the model Detectron2's build_model makes from it)", problem)
    if "GN" in cfg.MODEL and cfg.MODEL.GN.EPS <= 0:
        report.add("gn-eps", "config key MODEL.GN.EPS", f"must be > 0 (paper: 1e-5), got {cfg.MODEL.GN.EPS}")
    if training:
        _check_batch(cfg, report, num_processes)
    _check_dataset_names(cfg, report, train=training, known=known_datasets)
    report.checked.append("config semantics (the model built on the meta device)")
    return report
