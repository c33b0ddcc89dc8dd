"""Semantic checks of a merged config, run before anything is built.

``check_config`` reports every problem at once: registered names (with "did you mean"), GN group
counts against the channels each component will have (named per component: backbone stages,
FPN, heads), the ResNet rules and the batch rule (their one copy, in ``modeling.resnet`` and
``batch_scaling``), dataset names. The sources (YAML, ``_BASE_``, overrides) are checked and
merged by ``config_sources``; its two names are also importable from here.
"""

import difflib
import math
from typing import Dict, Iterable, List, Optional, Tuple

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog

from ..batch_scaling import images_per_process
from ..config import COMPONENT_NORM_KEYS, config_value, gn_settings
from ..layers import NORM_NAMES, resolve_num_groups
from ..modeling.resnet import BLOCKS_PER_STAGE, resnet_config_problems, resnet_stage_kwargs
from .config_sources import check_config_sources, default_base_cfg
from .report import ValidationReport

__all__ = [
    "default_base_cfg",
    "check_config_sources",
    "check_config",
    "component_channels",
]

# Names Detectron2's own get_norm accepts (its modules, when gn_det's are not used).
_D2_NORM_NAMES = (
    "BN",
    "SyncBN",
    "FrozenBN",
    "GN",
    "nnSyncBN",
    "naiveSyncBN",
    "naiveSyncBN_N",
    "LN",
    "",
)
_D2_GN_GROUPS = 32  # Detectron2's get_norm("GN") is nn.GroupNorm(32, C)


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


def _registered_class(registry_name: str, name: str):
    from detectron2 import modeling

    registry = getattr(modeling, registry_name)
    return registry.get(name) if name in registry else None


def _is_subclass(obj, base) -> bool:
    return isinstance(obj, type) and issubclass(obj, base)


def _uses_res5_roi_heads(cfg: CfgNode) -> bool:
    from detectron2.modeling.roi_heads import Res5ROIHeads

    return _is_subclass(
        _registered_class("ROI_HEADS_REGISTRY", cfg.MODEL.ROI_HEADS.NAME), Res5ROIHeads
    )


def _is_retinanet(cfg: CfgNode) -> bool:
    from detectron2.modeling.meta_arch import RetinaNet

    return _is_subclass(
        _registered_class("META_ARCH_REGISTRY", cfg.MODEL.META_ARCHITECTURE), RetinaNet
    )


def component_channels(cfg: CfgNode) -> Dict[str, List[Tuple[str, int]]]:
    """The channel counts each normalized component will see when the model is built.

    Returns ``{component: [(layer description, channels), ...]}`` for the components the config
    uses (components are the keys of ``gn_det.config.COMPONENT_NORM_KEYS``), following Detectron2's
    builders: ResNet stem and stage widths (bottleneck width = RESNETS.NUM_GROUPS x
    WIDTH_PER_GROUP, doubled per stage; outputs from RES2_OUT_CHANNELS, doubled per stage; res5
    also when a Res5ROIHeads builds it per region), FPN OUT_CHANNELS, RPN head conv dims (-1 = its
    input channels), box/mask head CONV_DIM, RetinaNet head convs.
    """
    m = cfg.MODEL
    out: Dict[str, List[Tuple[str, int]]] = {}
    backbone_name = str(m.BACKBONE.NAME)
    is_resnet = "resnet" in backbone_name.lower()
    has_fpn = "fpn" in backbone_name.lower()
    retinanet = _is_retinanet(cfg)
    res5_head = not retinanet and _uses_res5_roi_heads(cfg)
    stage_out = {}
    if is_resnet and m.RESNETS.DEPTH in BLOCKS_PER_STAGE:
        layers = [("stem", m.RESNETS.STEM_OUT_CHANNELS)]
        stage_idx = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}
        wanted = [stage_idx[f] for f in m.RESNETS.OUT_FEATURES if f in stage_idx] or [5]
        last_stage = 5 if res5_head else max(wanted)
        for stage in range(2, 6):
            # The widths the builder itself uses (modeling.resnet), not a second copy of them.
            _, kwargs = resnet_stage_kwargs(cfg, stage, norm="")
            stage_out[f"res{stage}"] = kwargs["out_channels"]
            if stage <= last_stage:
                if "bottleneck_channels" in kwargs:
                    layers.append((f"res{stage} bottleneck", kwargs["bottleneck_channels"]))
                layers.append((f"res{stage} output", kwargs["out_channels"]))
        out["BACKBONE"] = layers
    if has_fpn:
        out["FPN"] = [("FPN lateral/output convs (MODEL.FPN.OUT_CHANNELS)", m.FPN.OUT_CHANNELS)]
    if not retinanet and m.PROPOSAL_GENERATOR.NAME in ("RPN", "RRPN"):
        features = list(m.RPN.IN_FEATURES)
        in_channels = (
            m.FPN.OUT_CHANNELS if has_fpn else stage_out.get(features[0] if features else "", None)
        )
        if in_channels is not None:
            dims = [in_channels if d == -1 else d for d in m.RPN.CONV_DIMS]
            out["RPN_HEAD"] = [
                (f"RPN head conv {i} (MODEL.RPN.CONV_DIMS)", d) for i, d in enumerate(dims)
            ]
    if not retinanet and not res5_head and m.ROI_BOX_HEAD.NUM_CONV > 0:
        out["BOX_HEAD"] = [
            ("box head convs (MODEL.ROI_BOX_HEAD.CONV_DIM)", m.ROI_BOX_HEAD.CONV_DIM)
        ]
    if not retinanet and m.MASK_ON and m.ROI_MASK_HEAD.NUM_CONV > 0:
        out["MASK_HEAD"] = [
            ("mask head convs (MODEL.ROI_MASK_HEAD.CONV_DIM)", m.ROI_MASK_HEAD.CONV_DIM)
        ]
    if retinanet and has_fpn and m.RETINANET.NUM_CONVS > 0:
        out["RETINANET_HEAD"] = [
            ("RetinaNet head convs (MODEL.FPN.OUT_CHANNELS)", m.FPN.OUT_CHANNELS)
        ]
    return out


def _divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0] if n > 0 else []


def _check_groups(cfg: CfgNode, report: ValidationReport, owners: Dict[str, bool]) -> None:
    channels = component_channels(cfg)
    for component, layers in channels.items():
        norm_key = COMPONENT_NORM_KEYS[component]
        norm = config_value(cfg, norm_key)
        gn_det_built = owners.get(component, False)
        if component == "RPN_HEAD" and not gn_det_built:
            continue  # Detectron2's StandardRPNHead has no norm; only gn_det's reads MODEL.RPN.NORM
        valid_names = NORM_NAMES if gn_det_built else _D2_NORM_NAMES
        if not isinstance(norm, str) or norm not in valid_names:
            builder = "gn_det's" if gn_det_built else "Detectron2's own"
            report.add(
                "norm-name",
                f"config key {norm_key}",
                f"{norm!r} is not a norm {builder} {component} accepts; valid: "
                + ", ".join(repr(n) for n in valid_names),
            )
            continue
        if norm != "GN":
            continue  # LN (1 group) and IN (C groups) divide any channel count
        if not gn_det_built:
            bad = [(name, c) for name, c in layers if c % _D2_GN_GROUPS]
            if bad:
                report.add(
                    "group-count",
                    f"config key {norm_key}",
                    f"'GN' in Detectron2's own {component} means {_D2_GN_GROUPS} groups, which does not "
                    f"divide "
                    + ", ".join(f"{n} ({c} channels)" for n, c in bad)
                    + "; use channel counts divisible by 32, or gn_det's registered modules to set the groups",
                )
            continue
        if "GN" not in cfg.MODEL:
            report.add(
                "group-count",
                "config",
                "gn_det modules are used but the config has no MODEL.GN: call gn_det.add_gn_config(cfg) first",
            )
            return
        settings = gn_settings(cfg, component)
        override = cfg.MODEL.GN[component]
        by_channels = settings.channels_per_group is not None and settings.channels_per_group > 0
        field = "CHANNELS_PER_GROUP" if by_channels else "NUM_GROUPS"
        key = (
            f"MODEL.GN.{component}.{field}" if override[field] is not None else f"MODEL.GN.{field}"
        )
        value = settings.channels_per_group if by_channels else settings.num_groups
        bad = []
        for name, c in layers:
            try:
                resolve_num_groups(c, settings.num_groups, settings.channels_per_group, norm_key)
            except ValueError:
                bad.append((name, c))
        if not bad:
            continue
        common = 0
        for _, c in layers:
            common = math.gcd(common, c)
        what = "channels per group" if by_channels else "group counts"
        report.add(
            "group-count",
            f"config key {key}",
            f"{key}={value} does not divide the channels of {component} ({norm_key}='GN'): "
            + ", ".join(f"{n} has {c}" for n, c in bad)
            + f"; valid {what} for every {component} layer: "
            + ", ".join(str(d) for d in _divisors(common))
            + (
                f" (or override it with MODEL.GN.{component}.{field})"
                if override[field] is None
                else ""
            ),
        )
    if cfg.MODEL.GN.EPS <= 0:
        report.add(
            "gn-eps",
            "config key MODEL.GN.EPS",
            f"must be > 0 (paper: 1e-5), got {cfg.MODEL.GN.EPS}",
        )


def _check_resnet(cfg: CfgNode, report: ValidationReport, owners: Dict[str, bool]) -> None:
    if "resnet" not in str(cfg.MODEL.BACKBONE.NAME).lower():
        return
    # Detectron2's own ResNet builds deformable bottlenecks; gn_det's does not.
    for key, message in resnet_config_problems(cfg, allow_deform=not owners.get("BACKBONE")):
        report.add("resnet", f"config key {key}", message)


def _check_names(cfg: CfgNode, report: ValidationReport) -> Dict[str, bool]:
    """Check registered names; return which components gn_det's own modules will build."""
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

    m = cfg.MODEL
    owners: Dict[str, bool] = {}
    meta = _check_registered_name(
        report, "MODEL.META_ARCHITECTURE", m.META_ARCHITECTURE, META_ARCH_REGISTRY
    )
    backbone = _check_registered_name(
        report, "MODEL.BACKBONE.NAME", m.BACKBONE.NAME, BACKBONE_REGISTRY
    )
    owners["BACKBONE"] = owners["FPN"] = _from_gn_det(backbone)
    owners["RETINANET_HEAD"] = _from_gn_det(backbone) or _from_gn_det(meta)
    uses_proposals = isinstance(meta, type) and issubclass(meta, (GeneralizedRCNN, ProposalNetwork))
    uses_roi_heads = isinstance(meta, type) and issubclass(meta, GeneralizedRCNN)
    if uses_proposals:
        generator = m.PROPOSAL_GENERATOR.NAME
        _check_registered_name(
            report,
            "MODEL.PROPOSAL_GENERATOR.NAME",
            generator,
            PROPOSAL_GENERATOR_REGISTRY,
            ["PrecomputedProposals"],
        )
        if generator in ("RPN", "RRPN"):
            owners["RPN_HEAD"] = _from_gn_det(
                _check_registered_name(
                    report, "MODEL.RPN.HEAD_NAME", m.RPN.HEAD_NAME, RPN_HEAD_REGISTRY
                )
            )
    if uses_roi_heads:
        roi_heads = _check_registered_name(
            report, "MODEL.ROI_HEADS.NAME", m.ROI_HEADS.NAME, ROI_HEADS_REGISTRY
        )
        uses_roi_heads = roi_heads is not None  # which head names matter depends on the ROI heads
    if uses_roi_heads:
        if not _uses_res5_roi_heads(cfg):
            owners["BOX_HEAD"] = _from_gn_det(
                _check_registered_name(
                    report, "MODEL.ROI_BOX_HEAD.NAME", m.ROI_BOX_HEAD.NAME, ROI_BOX_HEAD_REGISTRY
                )
            )
        if m.MASK_ON:
            owners["MASK_HEAD"] = _from_gn_det(
                _check_registered_name(
                    report, "MODEL.ROI_MASK_HEAD.NAME", m.ROI_MASK_HEAD.NAME, ROI_MASK_HEAD_REGISTRY
                )
            )
        if m.KEYPOINT_ON:
            _check_registered_name(
                report,
                "MODEL.ROI_KEYPOINT_HEAD.NAME",
                m.ROI_KEYPOINT_HEAD.NAME,
                ROI_KEYPOINT_HEAD_REGISTRY,
            )
        if _uses_res5_roi_heads(cfg) and _from_gn_det(roi_heads):
            owners["BACKBONE"] = (
                True  # gn_det's Res5 ROI heads build res5 with the BACKBONE settings
            )
    if m.META_ARCHITECTURE in ("SemanticSegmentor", "PanopticFPN"):
        _check_registered_name(
            report, "MODEL.SEM_SEG_HEAD.NAME", m.SEM_SEG_HEAD.NAME, SEM_SEG_HEADS_REGISTRY
        )
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
    owners = _check_names(cfg, report)
    _check_resnet(cfg, report, owners)
    _check_groups(cfg, report, owners)
    if training:
        _check_batch(cfg, report, num_processes)
    _check_dataset_names(cfg, report, train=training, known=known_datasets)
    report.checked.append("config semantics")
    return report
