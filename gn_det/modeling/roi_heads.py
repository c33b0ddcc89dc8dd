"""C4 ROI heads whose per-region res5 stage takes the backbone's gn_det norm and settings."""
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads
from torch import nn

from ..config import component_norm
from ..layers import apply_conv_settings
from .norm_args import NormArg, SettingsArg, resolve_norm
from .resnet import GNBottleneckBlock, gn_resnet_args, gn_stage_kwargs

__all__ = ["make_gn_res5_stage", "GNRes5ROIHeads"]

# The C4 head runs res5 on 14x14 pooled regions; its first block halves them (stride 2).
_RES5_STRIDES = [2, 1, 1]


def make_gn_res5_stage(
    *,
    norm: NormArg = "GN",
    conv_settings: SettingsArg = None,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    width_per_group: int = 64,
    stride_in_1x1: bool = False,
    zero_init_residual: bool = False,
) -> nn.Sequential:
    """res5 of a bottleneck ResNet (3 ``GNBottleneckBlock``s, the first with stride 2) as the
    per-region head of a C4 model: ``Res5ROIHeads(res5=...)`` in LazyConfig files, and what
    ``GNRes5ROIHeads`` builds from a YAML config. Arguments as ``make_gn_resnet``'s; input
    (R, res2_out_channels * 4, 14, 14), output (R, res2_out_channels * 8, 7, 7)."""
    norm, settings = resolve_norm(norm, conv_settings, "make_gn_res5_stage.norm")
    _, kwargs = gn_stage_kwargs(
        5,
        norm,
        depth=50,  # any bottleneck depth: res5 has 3 blocks in all of them
        res2_out_channels=res2_out_channels,
        num_groups=num_groups,
        width_per_group=width_per_group,
        stride_in_1x1=stride_in_1x1,
        zero_init_residual=zero_init_residual,
    )
    blocks = ResNet.make_stage(
        GNBottleneckBlock,
        len(_RES5_STRIDES),
        stride_per_block=_RES5_STRIDES,
        in_channels=kwargs["out_channels"] // 2,
        **kwargs,
    )
    return apply_conv_settings(nn.Sequential(*blocks), settings)


@ROI_HEADS_REGISTRY.register()
class GNRes5ROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` with res5 built by ``make_gn_res5_stage`` with the BACKBONE
    norm/settings (``MODEL.RESNETS.NORM``, ``MODEL.GN.BACKBONE``, ``ZERO_INIT_RESIDUAL``).

    Detectron2's version passes ``MODEL.RESNETS.NORM`` as a name to its own blocks, so gn_det's
    group settings, WS and the fused path would not reach res5 there. State_dict keys are the same.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        depth = cfg.MODEL.RESNETS.DEPTH
        if depth < 50:
            raise ValueError(
                f"MODEL.ROI_HEADS.NAME=GNRes5ROIHeads needs a bottleneck ResNet "
                f"(MODEL.RESNETS.DEPTH >= 50), got DEPTH={depth}."
            )
        if cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1]:
            raise ValueError(
                "MODEL.RESNETS.DEFORM_ON_PER_STAGE[-1]=True: deformable convs are not supported "
                "in the res5 ROI head."
            )
        args = gn_resnet_args(cfg)
        res5 = make_gn_res5_stage(
            **{k: args[k] for k in ("norm", "conv_settings", "res2_out_channels", "num_groups",
                                    "width_per_group", "stride_in_1x1", "zero_init_residual")}
        )
        return res5, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8
