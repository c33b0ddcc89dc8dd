"""ResNet / ResNeXt built from Detectron2's blocks with gn_det's per-component norm.

The blocks subclass Detectron2's ``BasicStem``, ``BasicBlock`` and ``BottleneckBlock`` and change
one thing: every ReLU that directly follows a norm becomes that ``Conv2d``'s ``activation``, so a
conv-norm-ReLU is one module that ``apply_conv_settings`` can switch (e.g. to a fused GN+ReLU).
The last conv of a block is followed by the residual add and keeps no activation. Parameters,
buffers, state_dict keys, initialization (c2_msra) and numerics are Detectron2's.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Type

import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from torch import nn

from ..config import component_norm
from ..layers import apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm

__all__ = [
    "GNBasicStem",
    "GNBasicBlock",
    "GNBottleneckBlock",
    "BLOCKS_PER_STAGE",
    "STAGE_OF_FEATURE",
    "RESNET_CONFIG_KEYS",
    "resnet_problems",
    "resnet_config_problems",
    "gn_stage_kwargs",
    "resnet_stage_kwargs",
    "make_gn_resnet",
    "gn_resnet_args",
    "build_gn_resnet",
    "build_gn_resnet_backbone",
]

# Residual blocks in res2..res5 for each supported depth (He et al. 2016, Table 1).
BLOCKS_PER_STAGE: Dict[int, Tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
# The ResNet feature names OUT_FEATURES may list, and the stage that produces each.
STAGE_OF_FEATURE: Dict[str, int] = {"stem": 1, "res2": 2, "res3": 3, "res4": 4, "res5": 5}


def _relu_as_activation(*convs: Conv2d) -> None:
    # In-place, like the F.relu_ Detectron2's forward applies at the same place.
    for conv in convs:
        conv.activation = nn.ReLU(inplace=True)


def _zero_init_norm_weight(conv: Conv2d) -> None:
    """Zero the gamma of ``conv``'s norm so the residual branch starts as zero (Goyal et al. 2017).

    Only a trainable gamma (a Parameter): FrozenBN's weight is a buffer that never learns, so
    zeroing it would switch the residual branch off for good.
    """
    weight = getattr(conv.norm, "weight", None)
    if isinstance(weight, nn.Parameter):
        nn.init.zeros_(weight)


class GNBasicStem(BasicStem):
    """Detectron2's ``BasicStem`` (7x7/2 conv, norm, ReLU, 3x3/2 max-pool) with the ReLU in the conv.

    Input (N, C_in, H, W); output (N, out_channels, H/4, W/4).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm="BN"):
        super().__init__(in_channels, out_channels, norm)
        _relu_as_activation(self.conv1)

    def forward(self, x):
        return F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)


class GNBasicBlock(BasicBlock):
    """Detectron2's two-3x3-conv ``BasicBlock`` (ResNet-18/34); conv1 carries its ReLU.

    ``zero_init_residual`` zeroes conv2's norm gamma (the last norm before the residual add).
    """

    def __init__(self, in_channels, out_channels, *, stride=1, norm="BN", zero_init_residual=False):
        super().__init__(in_channels, out_channels, stride=stride, norm=norm)
        _relu_as_activation(self.conv1)
        if zero_init_residual:
            _zero_init_norm_weight(self.conv2)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class GNBottleneckBlock(BottleneckBlock):
    """Detectron2's 1x1-3x3-1x1 ``BottleneckBlock`` (ResNet-50+, ResNeXt); conv1, conv2 carry ReLUs.

    ``zero_init_residual`` zeroes conv3's norm gamma (the last norm before the residual add).
    """

    def __init__(self, in_channels, out_channels, *, zero_init_residual=False, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        _relu_as_activation(self.conv1, self.conv2)
        if zero_init_residual:
            _zero_init_norm_weight(self.conv3)

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


# The config key of each ``make_gn_resnet`` argument, so the YAML path's errors and validation
# reports name the key the user wrote.
RESNET_CONFIG_KEYS: Dict[str, str] = {
    "depth": "MODEL.RESNETS.DEPTH",
    "res2_out_channels": "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "num_groups": "MODEL.RESNETS.NUM_GROUPS",
    "res5_dilation": "MODEL.RESNETS.RES5_DILATION",
    "out_features": "MODEL.RESNETS.OUT_FEATURES",
    "deform_on_per_stage": "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
}


def resnet_problems(
    *,
    depth: int,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    res5_dilation: int = 1,
    out_features: Sequence[str] = ("res5",),
    deform_on_per_stage: Sequence[bool] = (),
    allow_deform: bool = False,
    names: Optional[Dict[str, str]] = None,
) -> List[Tuple[str, str]]:
    """Every ResNet setting that cannot be built, as ``(name, message)`` pairs.

    The one copy of these rules: ``make_gn_resnet`` raises on them, config validation reports
    them. ``names`` maps each argument to what to call it (``RESNET_CONFIG_KEYS`` for YAML
    configs; the argument's own name by default). ``allow_deform`` is for Detectron2's own
    ``build_resnet_backbone``, which has deformable bottlenecks; gn_det's blocks do not. The
    basic-block rules (ResNet-18/34) are Detectron2's.
    """
    names = names or {}

    def name(arg: str) -> str:
        return names.get(arg, arg)

    if depth not in BLOCKS_PER_STAGE:
        return [(name("depth"), f"{name('depth')}={depth} is not supported; valid: {sorted(BLOCKS_PER_STAGE)}.")]
    problems = []
    if res5_dilation not in (1, 2):
        problems.append((name("res5_dilation"), f"{name('res5_dilation')}={res5_dilation}; valid: 1 or 2."))
    if any(deform_on_per_stage) and (not allow_deform or depth < 50):
        key = name("deform_on_per_stage")
        problems.append(
            (
                key,
                f"{key}={list(deform_on_per_stage)}: deformable convs "
                + (
                    f"need bottleneck blocks ({name('depth')} >= 50, got {depth})."
                    if allow_deform
                    else "are not supported by gn_det's ResNet; set all to False or use "
                    "Detectron2's build_resnet_backbone."
                ),
            )
        )
    if depth < 50:
        basic_block_rules = {
            "res2_out_channels": (res2_out_channels, 64),
            "num_groups": (num_groups, 1),
            "res5_dilation": (res5_dilation, 1),
        }
        for arg, (value, required) in basic_block_rules.items():
            if value != required:
                problems.append(
                    (
                        name(arg),
                        f"{name(arg)}={value} is not possible with {name('depth')}={depth} "
                        f"(BasicBlock ResNet); set it to {required}.",
                    )
                )
    unknown = [f for f in out_features if f not in STAGE_OF_FEATURE]
    if unknown:
        key = name("out_features")
        problems.append((key, f"{key} has {unknown}; valid: {list(STAGE_OF_FEATURE)}."))
    return problems


def resnet_config_problems(cfg, allow_deform: bool = False) -> List[Tuple[str, str]]:
    """``resnet_problems`` of ``MODEL.RESNETS``, named by config key."""
    r = cfg.MODEL.RESNETS
    return resnet_problems(
        depth=r.DEPTH,
        res2_out_channels=r.RES2_OUT_CHANNELS,
        num_groups=r.NUM_GROUPS,
        res5_dilation=r.RES5_DILATION,
        out_features=r.OUT_FEATURES,
        deform_on_per_stage=r.DEFORM_ON_PER_STAGE,
        allow_deform=allow_deform,
        names=RESNET_CONFIG_KEYS,
    )


def _raise_problems(problems: List[Tuple[str, str]]) -> None:
    if problems:
        raise ValueError(" ".join(message for _, message in problems))


def gn_stage_kwargs(
    stage: int,
    norm,
    *,
    depth: int,
    res2_out_channels: int,
    num_groups: int,
    width_per_group: int,
    stride_in_1x1: bool,
    zero_init_residual: bool,
) -> Tuple[Type[CNNBlockBase], dict]:
    """The block class and the per-block keyword arguments of stage ``res<stage>`` (2..5).

    Channels follow Detectron2's layout: res2 outputs ``res2_out_channels`` and every later stage
    doubles it; bottleneck width is ``num_groups * width_per_group`` at res2, doubled likewise.
    Returned kwargs exclude ``num_blocks``, ``in_channels`` and strides (they depend on the caller).
    """
    scale = 2 ** (stage - 2)
    kwargs = {
        "out_channels": res2_out_channels * scale,
        "norm": norm,
        "zero_init_residual": zero_init_residual,
    }
    if depth < 50:
        return GNBasicBlock, kwargs
    kwargs.update(
        bottleneck_channels=num_groups * width_per_group * scale,
        num_groups=num_groups,
        stride_in_1x1=stride_in_1x1,
    )
    return GNBottleneckBlock, kwargs


def _stage_args(cfg) -> dict:
    r = cfg.MODEL.RESNETS
    return dict(
        depth=r.DEPTH,
        res2_out_channels=r.RES2_OUT_CHANNELS,
        num_groups=r.NUM_GROUPS,
        width_per_group=r.WIDTH_PER_GROUP,
        stride_in_1x1=r.STRIDE_IN_1X1,
        zero_init_residual=r.ZERO_INIT_RESIDUAL,
    )


def resnet_stage_kwargs(cfg, stage: int, norm) -> Tuple[Type[CNNBlockBase], dict]:
    """``gn_stage_kwargs`` of stage ``res<stage>`` with ``MODEL.RESNETS``' values."""
    return gn_stage_kwargs(stage, norm, **_stage_args(cfg))


def make_gn_resnet(
    *,
    depth: int = 50,
    norm: NormArg = "GN",
    conv_settings: SettingsArg = None,
    in_channels: int = 3,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    width_per_group: int = 64,
    stride_in_1x1: bool = False,
    res5_dilation: int = 1,
    zero_init_residual: bool = False,
    out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
    freeze_at: int = 2,
) -> ResNet:
    """A Detectron2 ``ResNet`` (ResNet-18...152, ResNeXt) of gn_det blocks, from plain arguments:
    what YAML configs build through ``build_gn_resnet`` and LazyConfig files call directly.

    Arguments are ``MODEL.RESNETS.*`` in lower case (``freeze_at`` is ``MODEL.BACKBONE.FREEZE_AT``)
    with the defaults of the paper's R-50-GN (Caffe2 weights: stride in the 3x3 conv).
    ``norm``/``conv_settings`` are resolved by ``resolve_norm`` (e.g. ``"GN"`` and
    ``dict(weight_std=True)``); the settings are applied to every normed conv
    (``apply_conv_settings``: WS, fused GN+ReLU). Stages after the last of ``out_features`` are not
    built. Frozen stages have all parameters, GN gammas and betas included, with
    ``requires_grad=False`` and BN turned into FrozenBN, as in Detectron2.
    """
    out_features = list(out_features)
    _raise_problems(
        resnet_problems(
            depth=depth,
            res2_out_channels=res2_out_channels,
            num_groups=num_groups,
            res5_dilation=res5_dilation,
            out_features=out_features,
        )
    )
    norm, settings = resolve_norm(norm, conv_settings, "make_gn_resnet.norm")
    stem = GNBasicStem(in_channels, stem_out_channels, norm=norm)
    last_stage = max(STAGE_OF_FEATURE[f] for f in out_features)
    stage_args = dict(
        depth=depth,
        res2_out_channels=res2_out_channels,
        num_groups=num_groups,
        width_per_group=width_per_group,
        stride_in_1x1=stride_in_1x1,
        zero_init_residual=zero_init_residual,
    )

    stages: List[List[CNNBlockBase]] = []
    in_channels = stem_out_channels
    for stage, num_blocks in zip(range(2, last_stage + 1), BLOCKS_PER_STAGE[depth]):
        block_class, kwargs = gn_stage_kwargs(stage, norm, **stage_args)
        dilation = res5_dilation if stage == 5 else 1
        # res2 follows the stem's max-pool; a dilated res5 keeps res4's resolution.
        first_stride = 1 if stage == 2 or dilation == 2 else 2
        if block_class is GNBottleneckBlock:
            kwargs["dilation"] = dilation
        stages.append(
            ResNet.make_stage(
                block_class,
                num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                **kwargs,
            )
        )
        in_channels = kwargs["out_channels"]
    resnet = ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at)
    return apply_conv_settings(resnet, settings)


def gn_resnet_args(cfg) -> dict:
    """``make_gn_resnet``'s arguments from a YAML config (norm and settings of ``BACKBONE``)."""
    r = cfg.MODEL.RESNETS
    norm, settings = component_norm(cfg, "BACKBONE")
    return dict(
        _stage_args(cfg),
        norm=norm,
        conv_settings=settings,
        stem_out_channels=r.STEM_OUT_CHANNELS,
        res5_dilation=r.RES5_DILATION,
        out_features=list(r.OUT_FEATURES),
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


def build_gn_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """``make_gn_resnet`` with ``MODEL.RESNETS.*``, ``MODEL.BACKBONE.FREEZE_AT`` and the BACKBONE
    norm (``component_norm(cfg, "BACKBONE")``), read as Detectron2's ``build_resnet_backbone``
    reads them; settings it cannot build are rejected by config key first."""
    _raise_problems(resnet_config_problems(cfg))
    return make_gn_resnet(in_channels=input_shape.channels, **gn_resnet_args(cfg))


@BACKBONE_REGISTRY.register()
def build_gn_resnet_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> ResNet:
    """ResNet/ResNeXt backbone (C4 style when ``OUT_FEATURES: ["res4"]``) with the BACKBONE norm.

    Drop-in for Detectron2's ``build_resnet_backbone``: same config keys, same state_dict keys.
    """
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    return build_gn_resnet(cfg, input_shape)
