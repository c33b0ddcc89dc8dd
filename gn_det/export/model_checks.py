"""Checks that a model is what its config says before it is exported.

An exported artifact has no config beside it: whoever deploys it reads class ``i`` as the
config's (or the checkpoint's ``dataset_metadata``'s) class ``i``. A model whose prediction
layers have another class count than the config would export fine and label every detection
wrongly, so it is refused here, before anything is written.
"""

from typing import List, Tuple

from detectron2.modeling import GeneralizedRCNN, RetinaNet
from torch import nn

__all__ = ["ModelConfigMismatchError", "class_counts", "check_model_matches_config"]


class ModelConfigMismatchError(ValueError):
    """The model's prediction layers do not have the config's number of classes."""


def class_counts(model: nn.Module) -> List[Tuple[str, int]]:
    """``(layer, classes)`` for each class-specific prediction layer of a Detectron2 detector:
    the box classifier (one extra background output), the class-specific mask predictor,
    RetinaNet's classifier (``num_anchors * classes`` channels)."""
    found = []
    if isinstance(model, GeneralizedRCNN) and hasattr(model.roi_heads, "box_predictor"):
        predictors = model.roi_heads.box_predictor
        predictors = predictors if isinstance(predictors, nn.ModuleList) else [predictors]
        for i, predictor in enumerate(predictors):
            name = "roi_heads.box_predictor" + (f".{i}" if len(predictors) > 1 else "") + ".cls_score"
            found.append((name, predictor.cls_score.out_features - 1))
        mask_head = getattr(model.roi_heads, "mask_head", None)
        predictor = getattr(mask_head, "predictor", None)
        if predictor is not None and predictor.out_channels > 1:  # 1: class-agnostic masks
            found.append(("roi_heads.mask_head.predictor", predictor.out_channels))
    if isinstance(model, RetinaNet):
        anchors = model.anchor_generator.num_cell_anchors[0]
        found.append(("head.cls_score", model.head.cls_score.out_channels // anchors))
        found.append(("num_classes (inference)", model.num_classes))
    return found


def check_model_matches_config(model: nn.Module, cfg) -> None:
    """Raise ``ModelConfigMismatchError`` naming the layer, its class count and the config key
    when a prediction layer of ``model`` has another number of classes than ``cfg``."""
    if isinstance(model, RetinaNet):
        key, expected = "MODEL.RETINANET.NUM_CLASSES", cfg.MODEL.RETINANET.NUM_CLASSES
    else:
        key, expected = "MODEL.ROI_HEADS.NUM_CLASSES", cfg.MODEL.ROI_HEADS.NUM_CLASSES
    for layer, classes in class_counts(model):
        if classes != expected:
            raise ModelConfigMismatchError(
                f"refusing to export: {layer} predicts {classes} classes but {key} is {expected}. "
                "Export with the config the model was trained with."
            )
