"""C4 ROI heads whose per-region res5 stage takes the backbone's gn_det norm and settings."""
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads
from torch import nn

from ..config import component_norm
from ..layers import apply_conv_settings
from .resnet import GNBottleneckBlock, resnet_stage_kwargs

__all__ = ["GNRes5ROIHeads"]

# The C4 head runs res5 on 14x14 pooled regions; its first block halves them (stride 2).
_RES5_STRIDES = [2, 1, 1]


@ROI_HEADS_REGISTRY.register()
class GNRes5ROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` with res5 built from ``GNBottleneckBlock`` and the BACKBONE
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
        norm, settings = component_norm(cfg, "BACKBONE")
        block_class, kwargs = resnet_stage_kwargs(cfg, 5, norm)
        assert block_class is GNBottleneckBlock
        out_channels = kwargs["out_channels"]
        blocks = ResNet.make_stage(
            block_class,
            len(_RES5_STRIDES),
            stride_per_block=_RES5_STRIDES,
            in_channels=out_channels // 2,
            **kwargs,
        )
        res5 = apply_conv_settings(nn.Sequential(*blocks), settings)
        return res5, out_channels
