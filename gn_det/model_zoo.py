"""gn_det's configs as installed with the package, the way ``detectron2.model_zoo`` serves
Detectron2's.

The configs live in ``gn_det/configs/`` (the repository's top-level ``configs/`` links there), so a
wheel carries them and a clone reads the same files. Names are paths relative to that directory,
e.g. ``"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x_gn.yaml"``; a leading ``configs/`` is
accepted too, so the paths in the docs work from any directory.

    from gn_det import model_zoo
    cfg = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x_gn.yaml")   # CfgNode
    cfg = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ_gn.py")           # LazyConfig

Files are found with ``importlib.resources``; YAML ``_BASE_`` and ``.py`` relative imports need
the configs as real files, which every pip install (wheel or editable) provides.
"""
import difflib
import os
from importlib import resources
from pathlib import Path
from typing import List, Union

from detectron2.config import CfgNode, LazyConfig, get_cfg
from omegaconf import DictConfig

from .config import add_gn_config

__all__ = [
    "CONFIG_SUFFIXES",
    "configs_dir",
    "list_configs",
    "get_config_file",
    "get_config",
    "resolve_config_file",
    "config_file_argument",
]

CONFIG_SUFFIXES = (".yaml", ".py")
_PREFIX = "configs/"


def configs_dir() -> Path:
    """The directory the configs are installed in (inside the ``gn_det`` package)."""
    root = resources.files("gn_det").joinpath("configs")
    if not isinstance(root, Path):
        # A zipped install: YAML _BASE_ and config imports resolve relative to real files.
        raise RuntimeError(
            f"gn_det's configs are not files on disk ({root!r}); install gn_det with pip "
            "(a wheel or editable install unpacks them)."
        )
    return root


def list_configs() -> List[str]:
    """Every config name (``.yaml`` and ``.py``, bases and ``common/`` parts included), sorted."""
    root = configs_dir()
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix in CONFIG_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
    )


def _name(config_path: str) -> str:
    name = str(config_path).replace(os.sep, "/")
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def get_config_file(config_path: str) -> str:
    """The installed file of config ``config_path`` (relative to gn_det's configs directory).

    Raises:
        FileNotFoundError: no such config; the message lists the closest names.
    """
    name = _name(config_path)
    path = configs_dir().joinpath(*name.split("/"))
    if Path(name).suffix not in CONFIG_SUFFIXES or not path.is_file():
        names = list_configs()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"{len(names)} configs, see gn_det.model_zoo.list_configs()"
        raise FileNotFoundError(f"{config_path!r} is not one of gn_det's configs ({hint}).")
    return str(path)


def get_config(config_path: str) -> Union[CfgNode, DictConfig]:
    """A config of gn_det's: for ``.yaml`` a Detectron2 ``CfgNode`` with gn_det's keys
    (``get_cfg()`` + ``add_gn_config`` + the file), for ``.py`` the ``LazyConfig`` it defines."""
    path = get_config_file(config_path)
    if path.endswith(".py"):
        return LazyConfig.load(path)
    cfg = add_gn_config(get_cfg())
    cfg.merge_from_file(path)
    return cfg


def resolve_config_file(config_file: str) -> str:
    """What a tool's ``--config-file`` names: the local file if it exists (or ``""`` if none was
    given), else gn_det's installed config of that name.

    Raises:
        FileNotFoundError: neither a local file nor a config of gn_det's.
    """
    if not config_file or os.path.isfile(config_file):
        return config_file
    try:
        return get_config_file(config_file)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--config-file {config_file!r} is not a file here ({os.getcwd()}), "
                                f"and {e.args[0]}") from None


def config_file_argument(text: str) -> str:
    """``argparse`` type of the tools' ``--config-file``: ``resolve_config_file`` where it finds the
    file, else ``text`` unchanged, so the run's checks report the missing file with the others."""
    try:
        return resolve_config_file(text)
    except FileNotFoundError:
        return text
