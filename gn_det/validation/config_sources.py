"""Config sources, checked before anything is built: a YAML file, its ``_BASE_`` chain and the
command-line overrides.

fvcore loads the chain and yacs merges it and the overrides, exactly as training does; this
module adds only what they lack. Where yacs stops at the first bad key with a bare ``KeyError``,
``check_config_sources`` reports every unknown key (with the file and line it is written at and
a "did you mean"), every value of the wrong type and every file fvcore cannot load, at once, and
still returns the merge of the good keys so the semantic checks (``config_checks``) can run.
"""

import copy
import difflib
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from detectron2.config import CfgNode, get_cfg

from ..config import add_gn_config, config_value
from .report import ValidationReport

__all__ = ["default_base_cfg", "check_config_sources"]

BASE_KEY = "_BASE_"  # fvcore's key for inherited files
# How yacs names the key it rejected (its errors carry no key attribute): a wrong type, and an
# unknown key (those are found before the merge; this catches any the diff did not foresee).
_YACS_WRONG_TYPE = re.compile(r"for config key: (\S+)")
_YACS_UNKNOWN_KEY = re.compile(r"Non-existent config key: (\S+)")
_MISSING = object()


def default_base_cfg() -> CfgNode:
    """Detectron2's defaults plus gn_det's keys: what tools merge the YAML into."""
    cfg = get_cfg()
    add_gn_config(cfg)
    return cfg


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
                # allow_unsafe as in Detectron2's merge_from_file, which training uses: its own
                # model-zoo RetinaNet configs need a python tag (fvcore logs a warning for it).
                loaded = super().load_yaml_with_base(filename, allow_unsafe=True)
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
        lines = _key_lines(text)
        try:
            own = _flat_keys(yaml.safe_load(text) or {})
        except yaml.constructor.ConstructorError:  # a python tag: keys from the node tree
            own = list(lines)  # (composed, never constructed: nothing runs a second time)
        reported_parents: List[str] = []
        for key in own:
            if key == BASE_KEY or key.startswith(BASE_KEY + "."):
                continue
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
    index,
) -> CfgNode:
    """yacs' merge of the loaded mapping into ``base_cfg()``; each key yacs rejects is reported
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
            message = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
            wrong_type = _YACS_WRONG_TYPE.search(message)
            unknown = _YACS_UNKNOWN_KEY.search(message)
            key = (wrong_type or unknown).group(1) if (wrong_type or unknown) else None
            value = pending
            for part in (key or "").split("."):
                value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
            if key is None or value is _MISSING:
                report.add(
                    "config-merge",
                    files[-1] if files else "config",
                    f"Detectron2 cannot merge the config: {type(e).__name__}: {message}",
                )
                return base_cfg()
            where = lines.get(key, files[-1])
            if wrong_type:
                report.add("config-type", where, _type_message(cfg, key, value, e))
            else:
                report.add("unknown-key", where, _unknown_key_message(cfg, key, index))
            _pop_key(pending, key)  # found above, so it goes: the loop ends


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
            cfg = _merge_loaded(base_cfg, loaded, texts, report, index)
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
