"""GN Mask R-CNN R18-FPN from scratch on the embedded shapes dataset, on CPU: the LazyConfig twin
of mask_rcnn_R_18_FPN_gn_scratch.yaml (same model; the same data, solver and schedule written as
Detectron2's LazyConfig pieces). Small enough to train on a laptop CPU:

    python3 tools/train_net.py --config-file configs/Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py
    python3 detectron2/tools/lazyconfig_train_net.py --config-file \\
        $(python3 -c "from gn_det import model_zoo; print(model_zoo.get_config_file('Synthetic/mask_rcnn_R_18_FPN_gn_scratch.py'))")

Importing gn_det (as this file does) registers the dataset: it is generated on first use.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from gn_det.evaluation import COCOAPEvaluator

from ..common.models.mask_rcnn_fpn_gn import model

# --- model: Base-Shapes-RCNN-FPN.yaml with GN in backbone, FPN, box and mask heads ---------------
model.backbone.bottom_up.update(
    depth=18,
    res2_out_channels=64,
    zero_init_residual=True,  # each residual block starts as identity: helps from scratch
    freeze_at=0,  # from scratch: every stage trains
)
model.backbone.out_channels = 64  # narrow FPN and heads: four shape classes, CPU budget
model.proposal_generator.head.in_channels = 64
# Shapes are about 20-90 px wide in 160 px images.
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.batch_size_per_image = 128
model.proposal_generator.pre_nms_topk = (1000, 500)
model.proposal_generator.post_nms_topk = (500, 200)
model.roi_heads.num_classes = 4
# 2-5 objects per image: 32 sampled RoIs, half of them foreground when there are enough.
model.roi_heads.batch_size_per_image = 32
model.roi_heads.positive_fraction = 0.5
model.roi_heads.box_head.input_shape = L(ShapeSpec)(channels=64, height=7, width=7)
model.roi_heads.box_head.conv_dims = [64, 64, 64, 64]
model.roi_heads.box_head.fc_dims = [256]
model.roi_heads.box_predictor.input_shape = L(ShapeSpec)(channels=256)
model.roi_heads.mask_head.input_shape = L(ShapeSpec)(channels=64, width=14, height=14)
model.roi_heads.mask_head.conv_dims = [64, 64, 64, 64, 64]
# ImageNet statistics (BGR): inputs normalized to about unit variance, as when training from scratch.
model.pixel_std = [57.375, 57.12, 58.395]

# --- data: the embedded shapes splits, 160 px, RLE masks ---------------------------------------
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "gn_det_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(160,), max_size=160, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.instance_mask_format = "bitmask"  # the json holds RLE masks
# 4 images per iteration in total, however many processes share them.
dataloader.train.total_batch_size = 4
# Loading a 160 px PNG costs ~4 ms: on a small CPU machine a loader process would only take cores.
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "gn_det_shapes_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=160, max_size=160)]
dataloader.test.num_workers = 0
# gn_det's COCOEvaluator: all 12 COCOeval numbers (official pycocotools).
dataloader.evaluator = L(COCOAPEvaluator)(
    dataset_name="${..test.dataset.names}", tasks=["bbox", "segm"]
)

# --- solver: SGD, LR 0.02, 1000 iterations, steps at 800 and 950, 100 warm-up iterations --------
optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02
optimizer.weight_decay = 1e-4
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[800, 950], num_updates=1000
    ),
    warmup_length=100 / 1000,
    warmup_method="linear",
    warmup_factor=0.001,
)

train = model_zoo.get_config("common/train.py").train
train.update(
    output_dir="output/synthetic/mask_rcnn_R_18_FPN_gn_scratch_py",
    init_checkpoint="",
    max_iter=1000,
    checkpointer=dict(period=500, max_to_keep=100),
    eval_period=0,  # Detectron2's EvalHook evaluates at the end of training in any case
    device="cpu",
    seed=0,
)
