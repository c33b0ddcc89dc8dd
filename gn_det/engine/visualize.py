"""Draw a model's predictions (boxes, masks, class names, scores) on images, to PNG files.

Prediction runs through Detectron2's ``DefaultPredictor`` (resize, BGR/RGB handling) and drawing
through its ``Visualizer``; weights load through gn_det's checkpointer, so a checkpoint with
another class count is an error rather than predictions from untrained layers.
"""
import logging
import os
from typing import List, Optional, Sequence

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import ColorMode, Visualizer

from .runs import load_for_inference
from .trainer import Trainer

__all__ = ["CheckedPredictor", "visualize_predictions", "dataset_images"]

logger = logging.getLogger(__name__)

# Small images are drawn enlarged to at least this many pixels on their short side.
_MIN_DRAWN_SIDE = 480


class CheckedPredictor(DefaultPredictor):
    """``DefaultPredictor`` that loads ``MODEL.WEIGHTS`` through ``Trainer.build_checkpointer``."""

    def __init__(self, cfg, trainer_cls=Trainer):
        weights = cfg.MODEL.WEIGHTS
        if not weights:
            raise ValueError("prediction needs trained weights: set MODEL.WEIGHTS (or --weights)")
        unloaded = cfg.clone()
        unloaded.defrost()
        unloaded.MODEL.WEIGHTS = ""  # DefaultPredictor then skips its own (unchecked) load
        super().__init__(unloaded)
        load_for_inference(trainer_cls.build_checkpointer(cfg, self.model), weights)


def dataset_images(dataset_name: str, num_images: int) -> List[dict]:
    """The first ``num_images`` records of a registered dataset (Detectron2's dict format)."""
    return list(DatasetCatalog.get(dataset_name))[:num_images]


def visualize_predictions(
    cfg,
    output_dir: str,
    *,
    image_paths: Sequence[str] = (),
    dataset_name: str = "",
    num_images: int = 8,
    metadata_name: Optional[str] = None,
) -> List[str]:
    """Predict on images and write one PNG per image into ``output_dir``; return the paths.

    Images come from ``image_paths``, or from ``dataset_name`` (its first ``num_images``); for a
    dataset the PNG shows predictions (left) beside the ground truth (right). Detections below
    ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` are not drawn. Class names come from
    ``metadata_name`` (default: the dataset, else ``DATASETS.TEST[0]``).
    """
    if not image_paths and not dataset_name:
        raise ValueError("give images to draw on (--input) or a registered dataset (--dataset-name)")
    metadata_name = metadata_name or dataset_name or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    metadata = MetadataCatalog.get(metadata_name) if metadata_name else None
    predictor = CheckedPredictor(cfg)
    records = dataset_images(dataset_name, num_images) if dataset_name else [{"file_name": p} for p in image_paths]
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for record in records:
        if not os.path.isfile(record["file_name"]):
            raise FileNotFoundError(f"image {record['file_name']!r} does not exist")
        bgr = read_image(record["file_name"], format="BGR")
        instances = predictor(bgr)["instances"].to("cpu")
        rgb = bgr[:, :, ::-1]
        scale = max(1.0, _MIN_DRAWN_SIDE / min(rgb.shape[:2]))  # labels stay legible on small images
        # SEGMENTATION mode colours instances by class (the dataset's thing_colors, if any), the
        # same in both panels, so a wrong class shows as a wrong colour.
        drawn = Visualizer(rgb, metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION)
        panels = [drawn.draw_instance_predictions(instances).get_image()]
        if "annotations" in record:
            truth = Visualizer(rgb, metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION)
            panels.append(truth.draw_dataset_dict(record).get_image())
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(output_dir, f"{stem}_pred.png")
        cv2.imwrite(path, np.concatenate(panels, axis=1)[:, :, ::-1])
        logger.info(f"{record['file_name']}: {len(instances)} detections -> {path}")
        written.append(path)
    return written
