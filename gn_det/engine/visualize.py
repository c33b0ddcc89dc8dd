"""Draw a model's predictions (boxes, masks, class names, scores) on images, to PNG files.

Prediction runs through Detectron2's ``DefaultPredictor`` (resize, BGR/RGB handling) and drawing
through its ``Visualizer``; weights load through gn_det's checkpointer, so a checkpoint with
another class count is an error rather than predictions from untrained layers. Class names come
from the checkpoint (its run's ``dataset_metadata``), so they are right even where the training
dataset is not registered.
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

from ..checkpoint.dataset_metadata import as_detectron2_metadata, find_dataset_metadata
from .train_net import Trainer

__all__ = ["CheckedPredictor", "visualize_predictions"]

logger = logging.getLogger(__name__)

# Small images are drawn enlarged to at least this many pixels on their short side.
_MIN_DRAWN_SIDE = 480


class CheckedPredictor(DefaultPredictor):
    """``DefaultPredictor`` that loads ``MODEL.WEIGHTS`` through ``Trainer.build_checkpointer``.

    ``metadata`` holds the class names of the checkpoint's run (``thing_classes[i]`` names
    ``pred_classes == i``) when the checkpoint or its directory records them; else, as in
    Detectron2, the metadata of ``DATASETS.TEST[0]``.
    """

    def __init__(self, cfg, trainer_cls=Trainer):
        weights = cfg.MODEL.WEIGHTS
        if not weights:
            raise ValueError("prediction needs trained weights: set MODEL.WEIGHTS (or --weights)")
        unloaded = cfg.clone()
        unloaded.defrost()
        unloaded.MODEL.WEIGHTS = ""  # DefaultPredictor then skips its own (unchecked) load
        super().__init__(unloaded)
        extra = trainer_cls.build_checkpointer(cfg, self.model).load_for_inference(weights)
        trained_on = find_dataset_metadata(weights, extra)
        if trained_on is not None:
            self.metadata = as_detectron2_metadata(trained_on, name=f"classes of {weights}")
        elif not cfg.DATASETS.TEST or not MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes"):
            logger.warning(
                f"{weights} records no class names (a checkpoint of plain Detectron2 or an older gn_det) "
                "and DATASETS.TEST names no registered dataset: detections are labelled with class indices."
            )


def _dataset_images(dataset_name: str, num_images: int) -> List[dict]:
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
    ``metadata_name`` if given, else from the checkpoint (``CheckedPredictor.metadata``); the
    ground truth of a dataset is drawn with the dataset's own metadata.
    """
    if not image_paths and not dataset_name:
        raise ValueError("give images to draw on (--input) or a registered dataset (--dataset-name)")
    predictor = CheckedPredictor(cfg)
    metadata = MetadataCatalog.get(metadata_name) if metadata_name else getattr(predictor, "metadata", None)
    truth_metadata = MetadataCatalog.get(dataset_name) if dataset_name else metadata
    names = list(metadata.get("thing_classes", None) or []) if metadata is not None else []
    truth_names = list(truth_metadata.get("thing_classes", None) or []) if truth_metadata is not None else []
    if names and truth_names and names != truth_names:
        logger.warning(
            f"the model was trained on the classes {names}, dataset {dataset_name!r} has {truth_names}: "
            "the two panels name classes differently"
        )
    records = _dataset_images(dataset_name, num_images) if dataset_name else [{"file_name": p} for p in image_paths]
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
            truth = Visualizer(rgb, truth_metadata, scale=scale, instance_mode=ColorMode.SEGMENTATION)
            panels.append(truth.draw_dataset_dict(record).get_image())
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(output_dir, f"{stem}_pred.png")
        cv2.imwrite(path, np.concatenate(panels, axis=1)[:, :, ::-1])
        labels = ", ".join(
            f"{names[c] if c < len(names) else c} {s:.2f}"
            for c, s in zip(instances.pred_classes.tolist(), instances.scores.tolist())
        )
        logger.info(f"{record['file_name']}: {len(instances)} detections ({labels}) -> {path}")
        written.append(path)
    return written
