"""The ``norm`` / ``conv_settings`` arguments every gn_det builder takes, made one thing.

YAML configs reach the builders through ``from_config`` with a ``NormFactory`` and its
``GNSettings`` (``gn_det.config.component_norm``); LazyConfig files and Python code call them with
plain values: a norm name (``"GN"``), a dict of GN settings, or Detectron2's own conventions (a
``channels -> module`` callable, ``""`` for none). ``resolve_norm`` turns any of these into what
the builder hands to Detectron2's modules and what it hands to ``apply_conv_settings``, so the
two paths build the same layers.
"""
import functools
from collections.abc import Mapping
from dataclasses import fields
from typing import Callable, Optional, Tuple, Union

from detectron2.layers import get_norm as d2_get_norm

from ..layers import NORM_NAMES, GNSettings, NormFactory, build_norm_factory

__all__ = ["NormArg", "SettingsArg", "as_gn_settings", "resolve_norm"]

NormArg = Union[str, None, NormFactory, Callable]
SettingsArg = Union[None, GNSettings, Mapping]

_SETTINGS_FIELDS = tuple(f.name for f in fields(GNSettings))


def as_gn_settings(settings: SettingsArg, where: str = "") -> Optional[GNSettings]:
    """``GNSettings`` from a ``GNSettings``, a mapping of its fields (a LazyConfig dict) or None."""
    if settings is None or isinstance(settings, GNSettings):
        return settings
    if isinstance(settings, Mapping):
        unknown = sorted(set(settings) - set(_SETTINGS_FIELDS))
        if unknown:
            raise ValueError(
                f"{where or 'conv_settings'} has unknown keys {unknown}; valid: {list(_SETTINGS_FIELDS)}."
            )
        return GNSettings(**dict(settings))
    raise TypeError(
        f"{where or 'conv_settings'} must be GNSettings, a dict of {list(_SETTINGS_FIELDS)} or "
        f"None; got {type(settings).__name__} {settings!r}."
    )


def _detectron2_norm(name: str) -> Optional[Callable]:
    """Detectron2's ``get_norm(name, channels)`` as a callable, if Detectron2 knows ``name``."""
    try:
        d2_get_norm(name, 32)  # asks Detectron2's own table; cheap (one 32-channel layer)
    except KeyError:
        return None
    return functools.partial(d2_get_norm, name)


def resolve_norm(
    norm: NormArg, conv_settings: SettingsArg = None, where: str = ""
) -> Tuple[Union[str, Callable], GNSettings]:
    """``(norm, settings)`` for a builder: ``norm`` as Detectron2's modules take it (``""`` or a
    ``channels -> module`` callable) and the settings to pass to ``apply_conv_settings``.

    Args:
        norm: ``""``/None (no norm); one of gn_det's names ``NORM_NAMES`` (``"GN"`` builds gn_det's
            GroupNorm with the settings' groups and eps); another name Detectron2's ``get_norm``
            knows (e.g. ``"naiveSyncBN"``), built by Detectron2; a ``NormFactory`` (carries its
            settings); or any ``channels -> nn.Module`` callable.
        conv_settings: ``GNSettings`` or a dict of its fields; None means the factory's settings
            for a ``NormFactory``, else the paper's defaults (``GNSettings()``: 32 groups, eps 1e-5,
            no WS, fused), which are also the YAML defaults (``MODEL.GN.*``).
        where: the argument being resolved, for error messages (e.g. ``"GNConvFCHead.conv_norm"``).
    """
    settings = as_gn_settings(conv_settings, f"{where} settings" if where else "")
    if isinstance(norm, NormFactory):
        if settings is not None and settings != norm.settings:
            raise ValueError(
                f"{where or 'norm'}: the NormFactory was built with {norm.settings} but conv_settings "
                f"is {settings}; give the settings once (in the factory, or conv_settings with a "
                "norm name)."
            )
        return norm, norm.settings
    settings = settings or GNSettings()
    if norm is None or norm == "":
        return "", settings
    if isinstance(norm, str):
        if norm in NORM_NAMES:
            return build_norm_factory(norm, settings, component=where), settings
        d2_norm = _detectron2_norm(norm)
        if d2_norm is None:
            raise ValueError(
                f"Unknown norm {norm!r}{f' for {where}' if where else ''}; valid: gn_det's "
                f"{', '.join(repr(n) for n in NORM_NAMES)} or a name Detectron2's get_norm knows."
            )
        return d2_norm, settings
    if callable(norm):
        return norm, settings
    raise TypeError(
        f"{where or 'norm'} must be a norm name, a NormFactory or a channels -> module callable; "
        f"got {type(norm).__name__} {norm!r}."
    )
