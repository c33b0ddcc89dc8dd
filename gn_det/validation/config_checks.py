"""Config checks, run before anything is built.

``check_config_sources`` loads a YAML file and its ``_BASE_`` chain with fvcore and merges it and
the command-line overrides with yacs, exactly as training does, adding only what they lack: where
yacs stops at the first bad key with a bare ``KeyError``, this reports every unknown key (with
the file and line it came from and a "did you mean") and every value of the wrong type at once.
``check_config`` checks a merged config: registered names, GN group counts against the channels
each component will have, the ResNet and batch rules (from ``modeling.resnet`` and
``batch_scaling``, their one copy), dataset names.
"""

import copy
import difflib
import math
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog

from ..batch_scaling import images_per_process
from ..config import COMPONENT_NORM_KEYS, add_gn_config, config_value, gn_settings
from ..layers import NORM_NAMES, resolve_num_groups
from ..modeling.resnet import BLOCKS_PER_STAGE, resnet_config_problems, resnet_stage_kwargs
from .report import ValidationReport

__all__ = [
    "default_base_cfg",
    "check_config_sources",
    "check_config",
    "component_channels",
]

BASE_KEY = "_BASE_"  # fvcore's key for inherited files
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
# yacs ends its type-mismatch message with the key; the only way it names the key it rejected.
_YACS_KEY_IN_MESSAGE = re.compile(r"for config key: (\S+)")


def default_base_cfg() -> CfgNode:
    """Detectron2's defaults plus gn_det's keys: what tools merge the YAML into."""
    cfg = get_cfg()
    add_gn_config(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------
# Sources: YAML files and overrides
# ----------------------------------------------------------------------------------------------


class _BaseCycle(Exception):
    pass


class _EmptyFile(Exception):
    pass


def _load_chain(path: str) -> Tuple[dict, List[str]]:
    """fvcore's ``load_yaml_with_base`` on ``path``, also returning every file it read.

    Files come in merge order (bases before the files that inherit them). A subclass observes
    fvcore's recursive calls; fvcore itself resolves the paths and merges. A ``_BASE_`` cycle,
    which fvcore would follow until RecursionError, raises ``_BaseCycle`` naming the chain.
    """
    files: List[str] = []
    stack: List[str] = []

    class _Recorder(CfgNode):
        @classmethod
        def load_yaml_with_base(cls, filename, allow_unsafe=False):
            real = os.path.realpath(os.path.expanduser(filename))
            if real in stack:
                raise _BaseCycle(" -> ".join(stack + [real]))
            stack.append(real)
            try:
                # allow_unsafe=False: a YAML tag that runs code is reported, not executed.
                loaded = super().load_yaml_with_base(filename, allow_unsafe=False)
            except TypeError:
                with cls._open_cfg(filename) as f:
                    if yaml.safe_load(f) is None:  # fvcore fails on it with a bare TypeError
                        raise _EmptyFile(filename) from None
                raise
            finally:
                stack.pop()
            files.append(filename)
            return loaded

    return _Recorder.load_yaml_with_base(path), files


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


def _deepest_node(cfg: CfgNode, full_key: str) -> Tuple[CfgNode, str]:
    """The deepest config group on the path of ``full_key`` and the key's first missing part,
    as a dotted key (e.g. ``MODEL.FPN.NROM`` -> (cfg.MODEL.FPN, "MODEL.FPN.NROM"))."""
    node, prefix = cfg, ""
    for part in full_key.split(".")[:-1]:
        if part not in node or not isinstance(node[part], CfgNode):
            return node, prefix + part
        node, prefix = node[part], prefix + part + "."
    return node, full_key


def _suggest(cfg: CfgNode, full_key: str, index: Dict[str, List[str]]) -> str:
    node, missing = _deepest_node(cfg, full_key)
    key = missing.rsplit(".", 1)[-1]
    parent = missing.rsplit(".", 1)[0] + "." if "." in missing else ""
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


def _is_known(cfg: CfgNode, full_key: str) -> bool:
    """Whether yacs would accept ``full_key`` from a file: it exists, or sits under a group that
    allows new keys, or yacs skips it as deprecated."""
    if cfg.key_is_deprecated(full_key):
        return True
    node = cfg
    for part in full_key.split("."):
        if not isinstance(node, CfgNode):
            return True  # a value given as a mapping: yacs' merge reports the type
        if part not in node:
            return node.is_new_allowed()
        node = node[part]
    return True


def _flat_keys(data: dict, prefix: str = "") -> List[str]:
    """Every dotted key of a loaded YAML mapping, parents before children."""
    keys = []
    for key, value in data.items():
        full = prefix + str(key)
        keys.append(full)
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, full + "."))
    return keys


def _unknown_key_message(cfg: CfgNode, full_key: str, index) -> str:
    if cfg.key_is_renamed(full_key):
        try:
            cfg.raise_key_rename_error(full_key)
        except KeyError as e:  # yacs' own message says what the key is called now
            return str(e.args[0] if e.args else e)
    return (
        f"{full_key} is not a config key (Detectron2 would stop with KeyError: 'Non-existent "
        f"config key: {full_key}'); {_suggest(cfg, full_key, index)}"
    )


def _report_unknown_keys(
    cfg: CfgNode, texts: Dict[str, str], report: ValidationReport, index
) -> List[str]:
    """Report every key of every file in the chain that the defaults lack; return those keys.

    Each file's own keys (not the merged result) are compared, so a key is named in the file and
    at the line where it is written.
    """
    unknown: List[str] = []
    for path, text in texts.items():
        own = yaml.safe_load(text) or {}
        own.pop(BASE_KEY, None)
        lines = _key_lines(text)
        reported_parents: List[str] = []
        for key in _flat_keys(own):
            if any(key.startswith(p + ".") for p in reported_parents) or _is_known(cfg, key):
                continue
            reported_parents.append(key)
            where = f"{path}:{lines[key]}" if key in lines else path
            report.add("unknown-key", where, _unknown_key_message(cfg, key, index))
            unknown.append(key)
    return unknown


def _pop_key(data: dict, full_key: str) -> bool:
    *parents, leaf = full_key.split(".")
    for part in parents:
        data = data.get(part)
        if not isinstance(data, dict):
            return False
    return data.pop(leaf, _MISSING) is not _MISSING


_MISSING = object()


def _type_message(cfg: CfgNode, full_key: str, value, error: Exception) -> str:
    default = config_value(cfg, full_key)
    if isinstance(default, CfgNode):
        return f"{full_key} is a group of keys ({full_key}.*), not a value; got {value!r}"
    if isinstance(value, dict):
        return f"{full_key} takes a {type(default).__name__} (default {default!r}), not a mapping"
    return (
        f"{full_key}={value!r} has the wrong type: expected {type(default).__name__} like "
        f"the default {default!r} ({error})"
    )


def _merge_loaded(
    base_cfg: Callable[[], CfgNode],
    loaded: dict,
    texts: Dict[str, str],
    report: ValidationReport,
) -> CfgNode:
    """yacs' merge of the loaded mapping into ``base_cfg()``; each value yacs rejects is reported
    (with the file and line of the last file that sets it) and left out, and the merge repeated,
    so every wrong type is named and the result holds all the good keys."""
    files = list(texts)
    lines = {}
    for path, text in texts.items():  # merge order: the last file setting a key gave its value
        lines.update({k: f"{path}:{n}" for k, n in _key_lines(text).items()})
    pending = copy.deepcopy(loaded)
    while True:
        cfg = base_cfg()
        try:
            cfg.merge_from_other_cfg(type(cfg)(pending))
            return cfg
        except (ValueError, KeyError, AssertionError) as e:
            match = _YACS_KEY_IN_MESSAGE.search(str(e))
            key = match.group(1) if match else None
            if key is None:
                report.add(
                    "config-merge",
                    files[-1] if files else "config",
                    f"Detectron2 cannot merge the config: {type(e).__name__}: {e}",
                )
                return base_cfg()
            value = pending
            for part in key.split("."):
                value = value[part]
            report.add("config-type", lines.get(key, files[-1]), _type_message(cfg, key, value, e))
            if not _pop_key(pending, key):  # cannot happen for a key yacs found; never loop
                return cfg


def _load_problem(path: str, error: Exception) -> Tuple[str, str]:
    """``(where, message)`` for an error fvcore raised while loading a YAML chain."""
    if isinstance(error, _BaseCycle):
        return path, f"_BASE_ cycle: {error}"
    if isinstance(error, _EmptyFile):
        return str(error), "the config file is empty; Detectron2 cannot merge it (write at least one key)"
    if isinstance(error, FileNotFoundError):
        return error.filename or path, "config file not found"
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark
        where = f"{mark.name}:{mark.line + 1}" if mark else path
        if isinstance(error, yaml.constructor.ConstructorError):
            return where, f"uses a YAML tag that can run code ({error.problem}); use plain YAML values"
        return where, f"not valid YAML: {error.problem}"
    if isinstance(error, (OSError, UnicodeDecodeError)):
        return path, f"cannot read the config file: {error}"
    return path, (
        f"fvcore cannot load the config file and its _BASE_ files ({type(error).__name__}: "
        f"{error}); each must be a mapping of keys, _BASE_ a path or a list of paths"
    )


def _report_overrides(cfg: CfgNode, opts: List[str], report: ValidationReport, index) -> None:
    """Apply ``KEY VALUE`` overrides one pair at a time with yacs' ``merge_from_list``, which
    processes pairs in order anyway, so a rejected pair is reported and the rest still apply."""
    if len(opts) % 2:
        report.add(
            "unknown-key",
            "command line",
            f"overrides must be KEY VALUE pairs; {opts[-1]!r} has no value",
        )
        opts = opts[:-1]
    for key, value in zip(opts[0::2], opts[1::2]):
        where = f"command-line override {key}"
        try:
            cfg.merge_from_list([key, value])
        except (KeyError, AssertionError, TypeError):  # renamed, "Non-existent key", a.b under a value
            report.add("unknown-key", where, _unknown_key_message(cfg, key, index))
        except ValueError as e:
            report.add("config-type", where, _type_message(cfg, key, value, e))


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
    opts = list(opts or [])
    defaults = base_cfg()
    index = _leaf_index(defaults)
    cfg = defaults
    if config_file:
        path = os.path.expanduser(config_file)
        try:
            loaded, files = _load_chain(path)
        except Exception as e:  # fvcore/yaml/OS errors: each one becomes a named problem
            report.add("config-file", *_load_problem(path, e))
            loaded, files = None, []
        if loaded is not None and not isinstance(loaded, dict):
            report.add(
                "config-file",
                path,
                f"the top level must be a mapping of keys, got {type(loaded).__name__}",
            )
        elif loaded is not None:
            texts = {}
            for name in files:
                with CfgNode._open_cfg(name) as f:  # fvcore's opener, as its loader used
                    texts[name] = f.read()
            for key in _report_unknown_keys(defaults, texts, report, index):
                _pop_key(loaded, key)
            cfg = _merge_loaded(base_cfg, loaded, texts, report)
    _report_overrides(cfg, opts, report, index)
    report.checked.append(
        f"config sources: {config_file or '(defaults)'} + {len(opts) // 2} override(s)"
    )
    if len(report.errors) > n_before:
        return cfg, report
    exact = base_cfg()
    try:
        if config_file:
            exact.merge_from_file(config_file)
        exact.merge_from_list(opts)
    except Exception as e:  # what the pass above did not foresee (e.g. version upgrades)
        report.add(
            "config-merge",
            config_file or "command line",
            f"Detectron2 cannot merge the config: {type(e).__name__}: {e}",
        )
        return cfg, report
    return exact, report


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
    _check_resnet(cfg, report, owners)
    _check_groups(cfg, report, owners)
    if training:
        _check_batch(cfg, report, num_processes)
    _check_dataset_names(cfg, report, train=training)
    report.checked.append("config semantics")
    return report
