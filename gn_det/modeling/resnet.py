"""ResNet / ResNeXt built from Detectron2's blocks with gn_det's per-component norm.

The blocks subclass Detectron2's ``BasicStem``, ``BasicBlock`` and ``BottleneckBlock`` and change
one thing: every ReLU that directly follows a norm becomes that ``Conv2d``'s ``activation``, so a
conv-norm-ReLU is one module that ``apply_conv_settings`` can switch (e.g. to a fused GN+ReLU).
The last conv of a block is followed by the residual add and keeps no activation. Parameters,
buffers, state_dict keys, initialization (c2_msra) and numerics are Detectron2's.
"""
from typing import Dict, List, Optional, Tuple, Type

import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from torch import nn

from ..config import component_norm
from ..layers import apply_conv_settings

__all__ = [
    "GNBasicStem",
    "GNBasicBlock",
    "GNBottleneckBlock",
    "BLOCKS_PER_STAGE",
    "STAGE_OF_FEATURE",
    "resnet_config_problems",
    "resnet_stage_kwargs",
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


def resnet_config_problems(cfg, allow_deform: bool = False) -> List[Tuple[str, str]]:
    """Every ``MODEL.RESNETS`` setting a ResNet cannot be built with, as ``(key, message)`` pairs.

    The one copy of these rules: ``build_gn_resnet`` raises on them and config validation reports
    them. ``allow_deform`` is for Detectron2's own ``build_resnet_backbone``, which has deformable
    bottlenecks; gn_det's blocks do not. The basic-block rules (ResNet-18/34) are Detectron2's.
    """
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in BLOCKS_PER_STAGE:
        return [
            (
                "MODEL.RESNETS.DEPTH",
                f"MODEL.RESNETS.DEPTH={r.DEPTH} is not supported; valid: {sorted(BLOCKS_PER_STAGE)}.",
            )
        ]
    problems = []
    if r.RES5_DILATION not in (1, 2):
        problems.append(
            ("MODEL.RESNETS.RES5_DILATION", f"MODEL.RESNETS.RES5_DILATION={r.RES5_DILATION}; valid: 1 or 2.")
        )
    if any(r.DEFORM_ON_PER_STAGE) and (not allow_deform or r.DEPTH < 50):
        problems.append(
            (
                "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
                f"MODEL.RESNETS.DEFORM_ON_PER_STAGE={list(r.DEFORM_ON_PER_STAGE)}: deformable convs "
                + (
                    f"need bottleneck blocks (MODEL.RESNETS.DEPTH >= 50, got {r.DEPTH})."
                    if allow_deform
                    else "are not supported by gn_det's ResNet; set all to False or use "
                    "Detectron2's build_resnet_backbone."
                ),
            )
        )
    if r.DEPTH < 50:
        basic_block_rules = {
            "MODEL.RESNETS.RES2_OUT_CHANNELS": (r.RES2_OUT_CHANNELS, 64),
            "MODEL.RESNETS.NUM_GROUPS": (r.NUM_GROUPS, 1),
            "MODEL.RESNETS.RES5_DILATION": (r.RES5_DILATION, 1),
        }
        for key, (value, required) in basic_block_rules.items():
            if value != required:
                problems.append(
                    (
                        key,
                        f"{key}={value} is not possible with MODEL.RESNETS.DEPTH={r.DEPTH} "
                        f"(BasicBlock ResNet); set it to {required}.",
                    )
                )
    unknown = [f for f in r.OUT_FEATURES if f not in STAGE_OF_FEATURE]
    if unknown:
        problems.append(
            (
                "MODEL.RESNETS.OUT_FEATURES",
                f"MODEL.RESNETS.OUT_FEATURES has {unknown}; valid: {list(STAGE_OF_FEATURE)}.",
            )
        )
    return problems


def _check_resnet_config(cfg) -> None:
    """Reject settings the gn_det ResNet cannot build, naming every bad key (before any layer)."""
    problems = resnet_config_problems(cfg)
    if problems:
        raise ValueError(" ".join(message for _, message in problems))


def resnet_stage_kwargs(cfg, stage: int, norm) -> Tuple[Type[CNNBlockBase], dict]:
    """The block class and the per-block keyword arguments of stage ``res<stage>`` (2..5).

    Channels follow Detectron2's layout: res2 outputs ``RES2_OUT_CHANNELS`` and every later stage
    doubles it; bottleneck width is ``NUM_GROUPS * WIDTH_PER_GROUP`` at res2, doubled likewise.
    Returned kwargs exclude ``num_blocks``, ``in_channels`` and strides (they depend on the caller).
    """
    r = cfg.MODEL.RESNETS
    scale = 2 ** (stage - 2)
    kwargs = {
        "out_channels": r.RES2_OUT_CHANNELS * scale,
        "norm": norm,
        "zero_init_residual": r.ZERO_INIT_RESIDUAL,
    }
    if r.DEPTH < 50:
        return GNBasicBlock, kwargs
    kwargs.update(
        bottleneck_channels=r.NUM_GROUPS * r.WIDTH_PER_GROUP * scale,
        num_groups=r.NUM_GROUPS,
        stride_in_1x1=r.STRIDE_IN_1X1,
    )
    return GNBottleneckBlock, kwargs


def build_gn_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """A Detectron2 ``ResNet`` of gn_det blocks, norm from ``component_norm(cfg, "BACKBONE")``.

    Reads ``MODEL.RESNETS.*`` and ``MODEL.BACKBONE.FREEZE_AT`` exactly as Detectron2's
    ``build_resnet_backbone`` does; stages after the last of ``OUT_FEATURES`` are not built.
    Frozen stages (``FREEZE_AT``) have all parameters, GN gammas and betas included, with
    ``requires_grad=False`` and BN turned into FrozenBN, as in Detectron2.
    """
    _check_resnet_config(cfg)
    norm, settings = component_norm(cfg, "BACKBONE")
    r = cfg.MODEL.RESNETS
    stem = GNBasicStem(input_shape.channels, r.STEM_OUT_CHANNELS, norm=norm)

    last_stage = max(STAGE_OF_FEATURE[f] for f in r.OUT_FEATURES)

    stages: List[List[CNNBlockBase]] = []
    in_channels = r.STEM_OUT_CHANNELS
    for stage, num_blocks in zip(range(2, last_stage + 1), BLOCKS_PER_STAGE[r.DEPTH]):
        block_class, kwargs = resnet_stage_kwargs(cfg, stage, norm)
        dilation = r.RES5_DILATION if stage == 5 else 1
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
    resnet = ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
    return apply_conv_settings(resnet, settings)


@BACKBONE_REGISTRY.register()
def build_gn_resnet_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> ResNet:
    """ResNet/ResNeXt backbone (C4 style when ``OUT_FEATURES: ["res4"]``) with the BACKBONE norm.

    Drop-in for Detectron2's ``build_resnet_backbone``: same config keys, same state_dict keys.
    """
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    return build_gn_resnet(cfg, input_shape)
