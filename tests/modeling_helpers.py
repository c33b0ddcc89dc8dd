"""Small configs, inputs and checks shared by tests/modeling/ (and a few layer tests).

Models are Detectron2 model-zoo configs made narrow (R50 with 1/4 of the channels, 64 px images,
few proposals) so a train step takes well under a second on one CPU core.
"""
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.structures import BitMasks, Boxes, Instances
from torch import nn

from gn_det import add_gn_config
from gn_det.layers import GroupNorm, WSConv2d

MASK_RCNN_FPN_GN_YAML = "Misc/mask_rcnn_R_50_FPN_3x_gn.yaml"
MASK_RCNN_C4_YAML = "COCO-InstanceSegmentation/mask_rcnn_R_50_C4_3x.yaml"
RETINANET_YAML = "COCO-Detection/retinanet_R_50_FPN_3x.yaml"

# gn_det's registered names for each Detectron2 name they replace.
GN_DET_NAMES = {
    ("MODEL", "BACKBONE", "NAME"): {
        "build_resnet_backbone": "build_gn_resnet_backbone",
        "build_resnet_fpn_backbone": "build_gn_resnet_fpn_backbone",
        "build_retinanet_resnet_fpn_backbone": "build_gn_retinanet_resnet_fpn_backbone",
    },
    ("MODEL", "RPN", "HEAD_NAME"): {"StandardRPNHead": "GNRPNHead"},
    ("MODEL", "ROI_HEADS", "NAME"): {"Res5ROIHeads": "GNRes5ROIHeads"},
    ("MODEL", "ROI_BOX_HEAD", "NAME"): {"FastRCNNConvFCHead": "GNConvFCHead"},
    ("MODEL", "ROI_MASK_HEAD", "NAME"): {"MaskRCNNConvUpsampleHead": "GNMaskRCNNConvUpsampleHead"},
    ("MODEL", "META_ARCHITECTURE"): {"RetinaNet": "GNRetinaNet"},
}

NORM_KEYS = (
    "MODEL.RESNETS.NORM",
    "MODEL.FPN.NORM",
    "MODEL.RPN.NORM",
    "MODEL.ROI_BOX_HEAD.NORM",
    "MODEL.ROI_MASK_HEAD.NORM",
    "MODEL.RETINANET.NORM",
)

# Every norm choice a component can take: id -> (norm name, MODEL.GN overrides).
NORM_CHOICES = {
    "BN": ("BN", {}),
    "SyncBN": ("SyncBN", {}),
    "FrozenBN": ("FrozenBN", {}),
    "GN-groups": ("GN", {"NUM_GROUPS": 16}),
    "GN-channels": ("GN", {"CHANNELS_PER_GROUP": 16}),
    "GN+WS": ("GN", {"WEIGHT_STD": True}),
    "LN": ("LN", {}),
    "IN": ("IN", {}),
    "none": ("", {}),
}

IMAGE_SIZE = 64


def zoo_cfg(yaml: str):
    """Detectron2's model-zoo config with gn_det's keys, on CPU, no weights, tiny test sizes."""
    cfg = get_cfg()
    add_gn_config(cfg)
    cfg.merge_from_file(model_zoo.get_config_file(yaml))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.RETINANET.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 128
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 32
    cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 50
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    return cfg


def use_gn_det_names(cfg):
    """Replace every Detectron2 component name in ``cfg`` by gn_det's registered one."""
    for path, renames in GN_DET_NAMES.items():
        node = cfg
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = renames.get(node[path[-1]], node[path[-1]])
    return cfg


def narrow(cfg):
    """R50 with a quarter of the channels (GN with 16 groups or 16 channels/group still divides)."""
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 32
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ROI_BOX_HEAD.CONV_DIM = 64
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 128
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 64
    return cfg


def set_norm_everywhere(cfg, choice: str):
    """Give every component the norm choice ``choice`` (a key of NORM_CHOICES)."""
    name, gn = NORM_CHOICES[choice]
    for key in NORM_KEYS:
        cfg.merge_from_list([key, name])
    for key, value in gn.items():
        cfg.MODEL.GN[key] = value
    return cfg


def synthetic_batch(num_images: int = 2, size: int = IMAGE_SIZE, seed: int = 0):
    """Detectron2 model inputs: random images with 2 boxes each, their classes and box masks."""
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        image = torch.rand(3, size, size, generator=generator) * 255
        xy = torch.rand(2, 2, generator=generator) * size / 2
        wh = size / 4 + torch.rand(2, 2, generator=generator) * size / 4
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = True
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.tensor([0, 2])
        instances.gt_masks = BitMasks(masks)
        batch.append({"image": image, "instances": instances})
    return batch


def normed_convs(module: nn.Module):
    """The Detectron2 ``Conv2d`` layers of ``module`` that carry a norm."""
    return [m for m in module.modules() if isinstance(m, Conv2d) and m.norm is not None]


def assert_norm_choice(module: nn.Module, choice: str, name: str):
    """Every normed conv of component ``name`` has the norm of ``choice``; there is at least one."""
    convs = normed_convs(module)
    norm_name, gn = NORM_CHOICES[choice]
    if norm_name == "":
        assert convs == [], f"{name}: norm '' but {len(convs)} convs carry a norm"
        return
    assert convs, f"{name}: no conv carries a norm for {choice}"
    for conv in convs:
        norm, channels = conv.norm, conv.out_channels
        if norm_name in ("GN", "LN", "IN"):
            assert isinstance(norm, GroupNorm), f"{name}: {type(norm)} for {choice}"
            expected_groups = {
                "LN": 1,
                "IN": channels,
                "GN": channels // gn["CHANNELS_PER_GROUP"] if "CHANNELS_PER_GROUP" in gn
                else gn.get("NUM_GROUPS", 32),
            }[norm_name]
            assert norm.num_groups == expected_groups, (name, choice, norm)
        elif norm_name == "FrozenBN":
            assert isinstance(norm, FrozenBatchNorm2d), (name, choice, norm)
        else:  # BN / SyncBN, possibly one per level (RetinaNet head)
            bn = norm[0] if isinstance(norm, nn.ModuleList) else norm
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm), (name, choice, norm)
        assert isinstance(conv, WSConv2d) == gn.get("WEIGHT_STD", False), (name, choice, conv)


def pin_fused_backend(model: nn.Module, backend: str = "torch") -> nn.Module:
    """Run ``model``'s fused GN convs on ``backend``. With "torch" they use nn.GroupNorm's own
    kernels, so a comparison with Detectron2's model is exact: a deep random-weight model moves
    its boxes by ~0.05 px under a 3e-7 relative change of its input, which would hide a real
    difference behind rounding (measured on the R50-FPN pair of test_modeling_compat)."""
    for m in model.modules():
        if hasattr(m, "fused_backend"):
            m.fused_backend = backend
    return model


def assert_close_at_scale(actual: torch.Tensor, expected: torch.Tensor, msg=None):
    """float32 rounding relative to the tensor's scale: a weight gradient sums many terms, and
    the fused kernels round their statistics differently from nn.GroupNorm's."""
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, atol=1e-5 * scale, rtol=1e-4, msg=msg)
