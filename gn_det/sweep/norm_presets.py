"""Norm presets: one name (``GN``, ``BN*``, ...) -> the norm keys of a whole detector.

A preset sets Detectron2's per-component norm keys (``MODEL.RESNETS.NORM``, ``MODEL.FPN.NORM``,
``MODEL.ROI_BOX_HEAD.NORM``, ``MODEL.ROI_MASK_HEAD.NORM``, ``MODEL.RETINANET.NORM``, and gn_det's
``MODEL.RPN.NORM`` where the base config normalizes the RPN) and ``MODEL.GN.*``, the way the COCO
configs under ``configs/`` express each norm:

==========  ==============================================================================
``BN*``     FrozenBN backbone (ImageNet statistics, never updated), no norm in FPN and heads
``BN``      BatchNorm everywhere, statistics over each process's (GPU's) own images
``SyncBN``  BatchNorm everywhere, statistics synchronized over all processes
``GN``      GroupNorm everywhere (``MODEL.GN.NUM_GROUPS`` groups, 32 by default)
``GN+WS``   GN plus Weight Standardization of every normed conv (``MODEL.GN.WEIGHT_STD``)
``GN_16ch`` GN with a fixed 16 channels per group (``MODEL.GN.CHANNELS_PER_GROUP``); any N
==========  ==============================================================================

Every other key of the config (weights, heads, schedule) is left as it is, so two presets applied
to one base config differ only in the norm; the one exception is ``MODEL.RESNETS.ZERO_INIT_RESIDUAL``,
which ``BN*`` turns off (a frozen gamma initialized to zero would stay zero when training from
scratch).
"""

import re
from dataclasses import dataclass
from typing import Iterable, List

from detectron2.config import CfgNode

from ..config import set_config_value

__all__ = [
    "NormPreset",
    "PRESET_NAMES",
    "parse_norm_preset",
    "parse_norm_presets",
    "apply_norm_preset",
    "normalized_component_keys",
]

# The fixed presets: display name -> (slug for directory names, per-component norm name).
_FIXED = {
    "BN*": ("frozenbn", "FrozenBN"),
    "BN": ("bn", "BN"),
    "SyncBN": ("syncbn", "SyncBN"),
    "GN": ("gn", "GN"),
    "GN+WS": ("gn_ws", "GN"),
}
# Other spellings accepted on the command line (case-insensitive); "BN*" needs quotes in a shell.
_ALIASES = {
    "bn*": "BN*",
    "frozenbn": "BN*",
    "bnstar": "BN*",
    "bn": "BN",
    "syncbn": "SyncBN",
    "gn": "GN",
    "gn+ws": "GN+WS",
    "gn_ws": "GN+WS",
    "gnws": "GN+WS",
}
# GN (or GN+WS) with a fixed number of channels per group: GN_16ch, gn16ch, GN+WS_8ch, gn_ws_8ch.
_CHANNELS_RE = re.compile(r"^gn(\+ws|_ws)?[_-]?(\d+)ch$", re.IGNORECASE)

PRESET_NAMES = tuple(_FIXED) + ("GN_<N>ch", "GN+WS_<N>ch")

# Components every preset normalizes (when the model has them), by their norm key.
_BACKBONE_KEY = "MODEL.RESNETS.NORM"
_RPN_KEY = "MODEL.RPN.NORM"


@dataclass(frozen=True)
class NormPreset:
    """A named way of normalizing a whole detector.

    ``norm`` is the norm name put in every normalized component (``FrozenBN`` only in the backbone
    for BN*); ``channels_per_group`` > 0 replaces the group count (GN only).
    """

    name: str
    slug: str
    norm: str
    weight_std: bool = False
    channels_per_group: int = 0

    @property
    def is_frozen_bn(self) -> bool:
        return self.norm == "FrozenBN"

    @property
    def is_gn(self) -> bool:
        return self.norm == "GN"

    @property
    def uses_batch_statistics(self) -> bool:
        """Whether training depends on the other images of the batch (BN, SyncBN)."""
        return self.norm in ("BN", "SyncBN")

    @property
    def needs_gn_det_components(self) -> bool:
        """Whether the preset uses MODEL.GN settings that only gn_det's components read."""
        return self.weight_std or self.channels_per_group > 0


def parse_norm_preset(name: str) -> NormPreset:
    """The preset called ``name`` (``BN*``/``FrozenBN``, ``BN``, ``SyncBN``, ``GN``, ``GN+WS``,
    ``GN_<N>ch``, ``GN+WS_<N>ch``; case-insensitive, ``_ws`` for ``+WS``)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Empty norm preset name {name!r}; valid: {', '.join(PRESET_NAMES)}.")
    key = name.strip()
    canonical = _ALIASES.get(key.lower())
    if canonical is not None:
        slug, norm = _FIXED[canonical]
        return NormPreset(canonical, slug, norm, weight_std=canonical == "GN+WS")
    match = _CHANNELS_RE.match(key)
    if match:
        with_ws, channels = bool(match.group(1)), int(match.group(2))
        if channels < 1:
            raise ValueError(f"Norm preset {name!r}: channels per group must be >= 1, got {channels}.")
        display = f"GN+WS_{channels}ch" if with_ws else f"GN_{channels}ch"
        slug = f"gn_ws_{channels}ch" if with_ws else f"gn_{channels}ch"
        return NormPreset(display, slug, "GN", weight_std=with_ws, channels_per_group=channels)
    raise ValueError(
        f"Unknown norm preset {name!r}; valid: {', '.join(PRESET_NAMES)} "
        "(case-insensitive; FrozenBN means BN*, e.g. GN_16ch for 16 channels per group)."
    )


def parse_norm_presets(names: Iterable[str]) -> List[NormPreset]:
    """Parse several names; the same preset named twice (e.g. ``BN*`` and ``FrozenBN``) is an error."""
    presets = [parse_norm_preset(n) for n in names]
    seen = {}
    for original, preset in zip(names, presets):
        if preset.slug in seen:
            raise ValueError(
                f"Norm presets {seen[preset.slug]!r} and {original!r} are the same preset "
                f"({preset.name}); name each once."
            )
        seen[preset.slug] = original
    if not presets:
        raise ValueError(f"No norm presets given; valid: {', '.join(PRESET_NAMES)}.")
    return presets


def normalized_component_keys(cfg: CfgNode) -> List[str]:
    """The norm keys a preset sets in ``cfg``'s model: backbone, FPN, box and mask heads for an
    R-CNN (the mask head only with ``MASK_ON``), backbone, FPN and head for RetinaNet; the RPN
    only where the base config already normalizes it (the paper's RPN has no norm)."""
    keys = [_BACKBONE_KEY]
    if "fpn" in cfg.MODEL.BACKBONE.NAME.lower():
        keys.append("MODEL.FPN.NORM")
    if "retinanet" in cfg.MODEL.META_ARCHITECTURE.lower():
        keys.append("MODEL.RETINANET.NORM")
    else:
        if "RPN" in cfg.MODEL and cfg.MODEL.RPN.get("NORM", ""):
            keys.append(_RPN_KEY)
        # C4 models have no conv box head, but the key is harmless there (unused).
        keys.append("MODEL.ROI_BOX_HEAD.NORM")
        if cfg.MODEL.MASK_ON:
            keys.append("MODEL.ROI_MASK_HEAD.NORM")
    return keys


def _uses_gn_det_components(cfg: CfgNode) -> List[str]:
    """Config keys naming a component that is not gn_det's (which would ignore MODEL.GN)."""
    not_ours = []
    if not cfg.MODEL.BACKBONE.NAME.startswith("build_gn_"):
        not_ours.append(f"MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME!r}")
    if "retinanet" not in cfg.MODEL.META_ARCHITECTURE.lower():
        if "fpn" in cfg.MODEL.BACKBONE.NAME.lower() and not cfg.MODEL.ROI_BOX_HEAD.NAME.startswith("GN"):
            not_ours.append(f"MODEL.ROI_BOX_HEAD.NAME={cfg.MODEL.ROI_BOX_HEAD.NAME!r}")
        if cfg.MODEL.MASK_ON and not cfg.MODEL.ROI_MASK_HEAD.NAME.startswith("GN"):
            not_ours.append(f"MODEL.ROI_MASK_HEAD.NAME={cfg.MODEL.ROI_MASK_HEAD.NAME!r}")
    elif cfg.MODEL.META_ARCHITECTURE != "GNRetinaNet":
        not_ours.append(f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r}")
    return not_ours


def apply_norm_preset(cfg: CfgNode, preset, num_processes: int = 1, where: str = "") -> CfgNode:
    """A copy of ``cfg`` normalized as ``preset`` says (the input is not modified).

    Args:
        cfg: a merged config with gn_det's keys (``gn_det.add_gn_config``).
        preset: a ``NormPreset`` or its name.
        num_processes: processes that will train together (GPUs x machines). SyncBN with one
            process is plain BN under another name, so it is refused.
        where: what the config is (e.g. its file), for error messages.

    Raises:
        ValueError: SyncBN for one process; GN+WS or channels-per-group on components that are not
            gn_det's (Detectron2's own ignore ``MODEL.GN``); a config without gn_det's keys.
    """
    if isinstance(preset, str):
        preset = parse_norm_preset(preset)
    origin = f" (config {where})" if where else ""
    if "GN" not in cfg.MODEL:
        raise KeyError(
            f"the config{origin} has no MODEL.GN: call gn_det.add_gn_config(cfg) before merging it."
        )
    if preset.norm == "SyncBN" and num_processes < 2:
        raise ValueError(
            f"Norm preset {preset.name!r} needs several processes to synchronize over, but this "
            f"sweep runs {num_processes} process per run: SyncBN would be plain per-GPU BN. "
            "Use --num-gpus N (N >= 2), or the 'BN' preset for per-GPU statistics."
        )
    if preset.needs_gn_det_components:
        not_ours = _uses_gn_det_components(cfg)
        if not_ours:
            raise ValueError(
                f"Norm preset {preset.name!r} sets MODEL.GN.WEIGHT_STD/CHANNELS_PER_GROUP, which only "
                f"gn_det's registered components read, but the config{origin} uses "
                f"{', '.join(not_ours)}. Use build_gn_resnet_fpn_backbone, GNConvFCHead and "
                "GNMaskRCNNConvUpsampleHead (see README.md, 'Models')."
            )
    out = cfg.clone()
    out.defrost()
    for key in normalized_component_keys(out):
        if preset.is_frozen_bn:
            # BN*: the backbone's ImageNet BN as a fixed affine; FPN and heads without norm.
            set_config_value(out, key, "FrozenBN" if key == _BACKBONE_KEY else "")
        else:
            set_config_value(out, key, preset.norm)
    if preset.is_frozen_bn and out.MODEL.RESNETS.get("ZERO_INIT_RESIDUAL", False):
        # A zeroed gamma that is frozen stays zero unless weights overwrite it: from scratch every
        # residual branch would be cut off for good. Pretrained weights replace it anyway.
        out.MODEL.RESNETS.ZERO_INIT_RESIDUAL = False
    out.MODEL.GN.WEIGHT_STD = preset.weight_std
    out.MODEL.GN.CHANNELS_PER_GROUP = preset.channels_per_group
    # A per-component WS override would make "GN" mean GN+WS somewhere: the preset decides WS.
    for component in out.MODEL.GN.keys():
        if isinstance(out.MODEL.GN[component], CfgNode) and "WEIGHT_STD" in out.MODEL.GN[component]:
            out.MODEL.GN[component].WEIGHT_STD = None
    return out
