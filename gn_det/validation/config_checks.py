"""Config checks, run before anything is built.

``check_config_sources`` reads a YAML file (and its ``_BASE_`` chain) plus command-line overrides
and reports every unknown key and every value of the wrong type, each with the file (and line)
it came from, where Detectron2's merge stops at the first one with a bare ``KeyError``.
``check_config`` checks a merged config: registered names, GN group counts against the channels
each component will have, the batch size against the number of processes, dataset names.
"""

import difflib
import math
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog

from ..config import COMPONENT_NORM_KEYS, add_gn_config, config_value, gn_settings
from ..layers import NORM_NAMES, resolve_num_groups
from .report import ValidationReport

__all__ = [
    "default_base_cfg",
    "check_config_sources",
    "check_config",
    "component_channels",
    "RESNET_BLOCKS_PER_STAGE",
]

BASE_KEY = "_BASE_"
RESNET_BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
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


def default_base_cfg() -> CfgNode:
    """Detectron2's defaults plus gn_det's keys: what tools merge the YAML into."""
    cfg = get_cfg()
    add_gn_config(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------
# Sources: YAML files and overrides
# ----------------------------------------------------------------------------------------------


def _key_lines(text: str) -> Dict[str, int]:
    """Dotted key -> 1-based line number of that key in a YAML text (best effort)."""
    lines: Dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node, prefix):
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            dotted = prefix + str(key_node.value)
            lines[dotted] = key_node.start_mark.line + 1
            walk(value_node, dotted + ".")

    walk(root, "")
    return lines


def _leaf_index(cfg: CfgNode, prefix: str = "") -> Dict[str, List[str]]:
    """Last key component -> full dotted keys that end with it (for "did you mean")."""
    index: Dict[str, List[str]] = {}
    for key, value in cfg.items():
        full = prefix + key
        index.setdefault(key, []).append(full)
        if isinstance(value, CfgNode):
            for k, v in _leaf_index(value, full + ".").items():
                index.setdefault(k, []).extend(v)
    return index


def _suggest(full_key: str, node: CfgNode, index: Dict[str, List[str]]) -> str:
    key = full_key.rsplit(".", 1)[-1]
    parent = full_key.rsplit(".", 1)[0] + "." if "." in full_key else ""
    close = [parent + k for k in difflib.get_close_matches(key, list(node.keys()), n=3, cutoff=0.6)]
    elsewhere = [k for k in index.get(key, []) if k not in close][:8]
    hints = []
    if close:
        hints.append("did you mean " + " or ".join(close) + "?")
    if elsewhere:
        hints.append("a key with this name exists at " + ", ".join(elsewhere))
    if not hints:
        where = f"under {parent[:-1]}" if parent else "at the top level"
        valid = sorted(node.keys())
        hints.append(
            f"valid keys {where}: " + ", ".join(valid[:30]) + (" ..." if len(valid) > 30 else "")
        )
    return "; ".join(hints)


class _SourceChecker:
    """Applies YAML files and overrides key by key to a scratch config, recording problems.

    The scratch config ends up as Detectron2's merge would make it, minus the rejected keys, so
    the semantic checks can still run when some keys were bad.
    """

    def __init__(self, base: CfgNode, report: ValidationReport):
        self.cfg = base
        self.report = report
        self.index = _leaf_index(base)

    def apply_file(self, path: str, stack: Tuple[str, ...] = ()) -> None:
        path = os.path.expanduser(path)
        if path in stack:
            self.report.add("config-file", path, f"_BASE_ cycle: {' -> '.join(stack + (path,))}")
            return
        if not os.path.isfile(path):
            self.report.add("config-file", path, "config file not found")
            return
        try:
            with open(path, "r") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            self.report.add("config-file", path, f"cannot read the config file: {e}")
            return
        try:
            data = yaml.safe_load(text)
        except yaml.constructor.ConstructorError as e:
            self.report.add(
                "config-file",
                f"{path}:{e.problem_mark.line + 1 if e.problem_mark else '?'}",
                f"uses a YAML tag that can run code ({e.problem}); use plain YAML values",
            )
            return
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else path
            self.report.add("config-file", where, f"not valid YAML: {getattr(e, 'problem', e)}")
            return
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.report.add(
                "config-file",
                path,
                f"the top level must be a mapping of keys, got {type(data).__name__}",
            )
            return
        lines = _key_lines(text)
        bases = data.pop(BASE_KEY, None)
        if bases is not None:
            for base in bases if isinstance(bases, list) else [bases]:
                if not isinstance(base, str):
                    self.report.add(
                        "config-file",
                        f"{path}:{lines.get(BASE_KEY, '?')}",
                        f"_BASE_ entries must be paths, got {base!r}",
                    )
                    continue
                base = os.path.expanduser(base)
                if not base.startswith(("/", "http://", "https://")):
                    base = os.path.join(os.path.dirname(path), base)
                self.apply_file(base, stack + (path,))
        self._apply_mapping(
            self.cfg, data, "", lambda key: f"{path}:{lines[key]}" if key in lines else path
        )

    def apply_overrides(self, opts: Sequence[str]) -> None:
        opts = list(opts or [])
        if len(opts) % 2:
            self.report.add(
                "unknown-key",
                "command line",
                f"overrides must be KEY VALUE pairs; {opts[-1]!r} has no value",
            )
            opts = opts[:-1]
        for key, value in zip(opts[0::2], opts[1::2]):
            self._apply_leaf_path(key, value, f"command-line override {key}")

    def _apply_mapping(
        self, node: CfgNode, data: dict, prefix: str, where: Callable[[str], str]
    ) -> None:
        for key, value in data.items():
            full = prefix + str(key)
            if key not in node:
                if node.is_new_allowed():
                    node[key] = CfgNode(value) if isinstance(value, dict) else value
                    continue
                if self._deprecated_or_renamed(full, where(full)):
                    continue
                self.report.add(
                    "unknown-key",
                    where(full),
                    f"{full} is not a config key (Detectron2 would stop with KeyError: 'Non-existent "
                    f"config key: {full}'); {_suggest(full, node, self.index)}",
                )
                continue
            current = node[key]
            if isinstance(current, CfgNode):
                if isinstance(value, dict):
                    self._apply_mapping(current, value, full + ".", where)
                else:
                    self.report.add(
                        "config-type",
                        where(full),
                        f"{full} is a group of keys ({full}.*), not a value; got {value!r}",
                    )
                continue
            if isinstance(value, dict):
                self.report.add(
                    "config-type",
                    where(full),
                    f"{full} takes a {type(current).__name__} (default {current!r}), not a mapping",
                )
                continue
            self._set_leaf(full, value, where(full))

    def _apply_leaf_path(self, full: str, value, where: str) -> None:
        node = self.cfg
        parts = full.split(".")
        prefix = ""
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], CfgNode):
                if self._deprecated_or_renamed(full, where):
                    return
                self.report.add(
                    "unknown-key",
                    where,
                    f"{full} is not a config key; {_suggest(prefix + part, node, self.index)}",
                )
                return
            node = node[part]
            prefix += part + "."
        if parts[-1] not in node:
            if node.is_new_allowed():
                node[parts[-1]] = CfgNode._decode_cfg_value(value)
                return
            if self._deprecated_or_renamed(full, where):
                return
            self.report.add(
                "unknown-key",
                where,
                f"{full} is not a config key; {_suggest(full, node, self.index)}",
            )
            return
        if isinstance(node[parts[-1]], CfgNode):
            self.report.add(
                "config-type", where, f"{full} is a group of keys ({full}.*), not a value"
            )
            return
        self._set_leaf(full, value, where)

    def _set_leaf(self, full: str, value, where: str) -> None:
        # yacs' own decoding and type coercion, exactly as Detectron2's merge applies them.
        try:
            self.cfg.merge_from_list([full, value])
        except (ValueError, AssertionError, KeyError) as e:
            default = self.cfg
            for part in full.split("."):
                default = default[part]
            self.report.add(
                "config-type",
                where,
                f"{full}={value!r} has the wrong type: expected {type(default).__name__} like "
                f"the default {default!r} ({e})",
            )

    def _deprecated_or_renamed(self, full: str, where: str) -> bool:
        if self.cfg.key_is_deprecated(full):
            return True
        if self.cfg.key_is_renamed(full):
            try:
                self.cfg.raise_key_rename_error(full)
            except KeyError as e:  # yacs' own message says what the key is called now
                self.report.add("unknown-key", where, str(e.args[0] if e.args else e))
            return True
        return False


def check_config_sources(
    config_file: Optional[str],
    opts: Sequence[str] = (),
    base_cfg: Callable[[], CfgNode] = default_base_cfg,
    report: Optional[ValidationReport] = None,
) -> Tuple[CfgNode, ValidationReport]:
    """Check a YAML config (with its ``_BASE_`` files) and ``KEY VALUE`` overrides.

    Returns ``(cfg, report)``. With no problems ``cfg`` is built exactly as training builds it
    (``base_cfg()``, ``merge_from_file``, ``merge_from_list``); otherwise it is the merge without
    the rejected keys, so later checks still run on the rest.
    """
    report = report if report is not None else ValidationReport()
    n_before = len(report.errors)
    checker = _SourceChecker(base_cfg(), report)
    if config_file:
        checker.apply_file(config_file)
    checker.apply_overrides(opts)
    report.checked.append(
        f"config sources: {config_file or '(defaults)'} + {len(opts or []) // 2} override(s)"
    )
    if len(report.errors) > n_before:
        return checker.cfg, report
    cfg = base_cfg()
    try:
        if config_file:
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts or []))
    except Exception as e:  # anything the key-by-key pass did not foresee (e.g. version upgrades)
        report.add(
            "config-merge",
            config_file or "command line",
            f"Detectron2 cannot merge the config: {type(e).__name__}: {e}",
        )
        return checker.cfg, report
    return cfg, report


# ----------------------------------------------------------------------------------------------
# Semantic checks on a merged config
# ----------------------------------------------------------------------------------------------


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
    if is_resnet and m.RESNETS.DEPTH in RESNET_BLOCKS_PER_STAGE:
        layers = [("stem", m.RESNETS.STEM_OUT_CHANNELS)]
        stage_idx = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}
        wanted = [stage_idx[f] for f in m.RESNETS.OUT_FEATURES if f in stage_idx] or [5]
        last_stage = 5 if res5_head else max(wanted)
        bottleneck = m.RESNETS.NUM_GROUPS * m.RESNETS.WIDTH_PER_GROUP
        width = m.RESNETS.RES2_OUT_CHANNELS
        for stage in range(2, 6):
            stage_out[f"res{stage}"] = width
            if stage <= last_stage:
                if m.RESNETS.DEPTH >= 50:
                    layers.append((f"res{stage} bottleneck", bottleneck))
                layers.append((f"res{stage} output", width))
            width *= 2
            bottleneck *= 2
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


def _check_resnet(cfg: CfgNode, report: ValidationReport) -> None:
    r = cfg.MODEL.RESNETS
    if "resnet" not in str(cfg.MODEL.BACKBONE.NAME).lower():
        return
    if r.DEPTH not in RESNET_BLOCKS_PER_STAGE:
        report.add(
            "resnet",
            "config key MODEL.RESNETS.DEPTH",
            f"{r.DEPTH} is not a ResNet depth; valid: {', '.join(map(str, RESNET_BLOCKS_PER_STAGE))}",
        )
        return
    if r.DEPTH in (18, 34):
        if r.RES2_OUT_CHANNELS != 64:
            report.add(
                "resnet",
                "config key MODEL.RESNETS.RES2_OUT_CHANNELS",
                f"must be 64 for R{r.DEPTH} (basic blocks), got {r.RES2_OUT_CHANNELS}",
            )
        if r.NUM_GROUPS != 1:
            report.add(
                "resnet",
                "config key MODEL.RESNETS.NUM_GROUPS",
                f"must be 1 for R{r.DEPTH} (no ResNeXt basic blocks), got {r.NUM_GROUPS}",
            )
    stages = {"stem", "res2", "res3", "res4", "res5"}
    bad = [f for f in r.OUT_FEATURES if f not in stages]
    if bad:
        report.add(
            "resnet",
            "config key MODEL.RESNETS.OUT_FEATURES",
            f"unknown feature(s) {bad}; valid: {sorted(stages)}",
        )


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
    batch = cfg.SOLVER.IMS_PER_BATCH
    if batch <= 0:
        report.add("batch-size", "config key SOLVER.IMS_PER_BATCH", f"must be > 0, got {batch}")
        return
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference and reference != num_processes:
        # DefaultTrainer.auto_scale_workers rescales the batch from the reference world size.
        if batch % reference:
            report.add(
                "batch-size",
                "config key SOLVER.IMS_PER_BATCH",
                f"{batch} is not divisible by SOLVER.REFERENCE_WORLD_SIZE={reference}; use a multiple of {reference}",
            )
            return
        batch = int(round(batch * num_processes / reference))
    if batch % num_processes:
        lower = batch - batch % num_processes
        report.add(
            "batch-size",
            "config key SOLVER.IMS_PER_BATCH",
            f"{batch} images per batch cannot be split evenly over {num_processes} processes "
            f"(--num-gpus x --num-machines); use a multiple of {num_processes}, e.g. "
            + ", ".join(str(v) for v in (lower, lower + num_processes) if v > 0),
        )


def _check_dataset_names(cfg: CfgNode, report: ValidationReport, train: bool = True) -> None:
    registered = DatasetCatalog.list()
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
) -> ValidationReport:
    """Semantic checks of a merged config; every problem found is added to the report.

    Args:
        num_processes: total training processes (``--num-gpus`` x ``--num-machines``).
        training: False for evaluation only (DATASETS.TRAIN and the batch size are not used).
    """
    report = report if report is not None else ValidationReport()
    owners = _check_names(cfg, report)
    _check_resnet(cfg, report)
    _check_groups(cfg, report, owners)
    if training:
        _check_batch(cfg, report, num_processes)
    _check_dataset_names(cfg, report, train=training)
    report.checked.append("config semantics")
    return report
