"""ResNet + FPN backbones: Detectron2's ``FPN`` on a gn_det ResNet, each with its own norm.

The bottom-up ResNet takes the BACKBONE norm and settings, the FPN's lateral and output convs the
FPN ones (``MODEL.FPN.NORM``, ``MODEL.GN.FPN``); state_dict keys are Detectron2's.
"""
from contextlib import contextmanager
from typing import Optional, Sequence

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from torch import nn

from ..config import component_norm
from ..layers import apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm
from .resnet import build_gn_resnet

__all__ = ["make_gn_fpn", "build_gn_fpn", "build_gn_resnet_fpn_backbone", "build_gn_retinanet_resnet_fpn_backbone"]


@contextmanager
def _without_child(module: nn.Module, name: str):
    """Detach child ``name`` for the duration, so module-wide passes skip it."""
    child = module._modules.pop(name)
    try:
        yield module
    finally:
        module._modules[name] = child


def make_gn_fpn(
    *,
    bottom_up: Backbone,
    in_features: Sequence[str],
    out_channels: int = 256,
    norm: NormArg = "GN",
    conv_settings: SettingsArg = None,
    top_block: Optional[nn.Module] = None,
    fuse_type: str = "sum",
    square_pad: int = 0,
) -> FPN:
    """Detectron2's ``FPN`` over ``bottom_up``, its lateral and output convs with ``norm``, from
    plain arguments: what YAML configs build through ``build_gn_fpn`` and LazyConfig files call.

    ``norm``/``conv_settings`` are resolved by ``resolve_norm``. The settings (e.g. WS) are applied
    to the FPN's own layers only: ``bottom_up`` already carries its own, which may differ.
    """
    norm, settings = resolve_norm(norm, conv_settings, "make_gn_fpn.norm")
    fpn = FPN(
        bottom_up=bottom_up,
        in_features=list(in_features),
        out_channels=out_channels,
        norm=norm,
        top_block=top_block,
        fuse_type=fuse_type,
        square_pad=square_pad,
    )
    with _without_child(fpn, "bottom_up"):
        apply_conv_settings(fpn, settings)
    return fpn


def build_gn_fpn(cfg, bottom_up: nn.Module, top_block: nn.Module) -> FPN:
    """``make_gn_fpn`` with ``MODEL.FPN.*`` and ``component_norm(cfg, "FPN")``."""
    norm, settings = component_norm(cfg, "FPN")
    return make_gn_fpn(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=norm,
        conv_settings=settings,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_gn_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet/ResNeXt + FPN with outputs p2-p6 (p6: stride-2 max-pool of p5), as Detectron2's
    ``build_resnet_fpn_backbone``. Outputs: dict ``p<k>`` -> (N, FPN.OUT_CHANNELS, H/2^k, W/2^k)."""
    return build_gn_fpn(cfg, build_gn_resnet(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_gn_retinanet_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet/ResNeXt + FPN with outputs p3-p7 (p6, p7: 3x3/2 convs from res5, no norm), as
    Detectron2's ``build_retinanet_resnet_fpn_backbone``."""
    bottom_up = build_gn_resnet(cfg, input_shape)
    in_channels_p6p7 = bottom_up.output_shape()["res5"].channels
    top_block = LastLevelP6P7(in_channels_p6p7, cfg.MODEL.FPN.OUT_CHANNELS)
    return build_gn_fpn(cfg, bottom_up, top_block)
