"""Loading a checkpoint into a model whose class count differs (fine-tuning).

Detectron2's checkpointer already skips every weight whose shape differs from the model's, with a
generic "double check if this is expected" warning per tensor. For fine-tuning that is too loose
and too quiet: only the class-specific prediction layers may differ. ``FineTuneCheckpointer``
re-initializes those (the model keeps its fresh initialization for them), reports them in the log
and in ``fine_tune_report.json``, and refuses any other shape mismatch, which means the config
does not describe the checkpoint's model. ``load_for_inference`` is the stricter load for
evaluation and prediction, and every save carries the run's classes (``dataset_metadata``).
"""
import json
import logging
import os
import re
from typing import List, Optional, Tuple

from .checkpointer import SafeDetectionCheckpointer

__all__ = ["FineTuneCheckpointer", "CheckpointMismatchError"]

logger = logging.getLogger(__name__)

# Parameters whose first dimension depends on the number of classes: the box classifier and
# class-specific box regressor (one per cascade stage), the mask predictor, RetinaNet's classifier.
CLASS_SPECIFIC_PATTERNS = (
    r"(^|\.)box_predictor(\.\d+)?\.(cls_score|bbox_pred)\.(weight|bias)$",
    r"(^|\.)mask_head\.predictor\.(weight|bias)$",
    r"(^|\.)head\.cls_score\.(weight|bias)$",
)
_CLASS_SPECIFIC = [re.compile(p) for p in CLASS_SPECIFIC_PATTERNS]

REPORT_NAME = "fine_tune_report.json"
Shape = Tuple[int, ...]


def is_class_specific(key: str) -> bool:
    """Whether a state_dict key names a class-specific prediction weight."""
    return any(p.search(key) for p in _CLASS_SPECIFIC)


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model beyond the class-specific layers."""


def _class_count(shapes: List[Tuple[str, Shape, Shape]], which: int) -> Optional[int]:
    """Class count implied by the box classifier's output size (it has one extra background row)."""
    for key, *pair in shapes:
        if re.search(r"box_predictor(\.0)?\.cls_score\.weight$", key):
            return pair[which][0] - 1
    return None


class FineTuneCheckpointer(SafeDetectionCheckpointer):
    """``DetectionCheckpointer`` that loads across a change of class count.

    After ``load``, ``reinitialized`` lists ``(key, checkpoint shape, model shape)`` of the
    class-specific weights that were not loaded; every other weight either loaded or is reported
    by Detectron2 as missing/unexpected (as usual).

    Args:
        dataset_metadata: saved under ``dataset_metadata`` in every checkpoint (the classes of the
            run, see ``gn_det.checkpoint.dataset_metadata``); None saves none.
        Other arguments: as ``SafeDetectionCheckpointer``.
    """

    def __init__(self, model, save_dir="", *, dataset_metadata: Optional[dict] = None, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.dataset_metadata = dataset_metadata
        self.reinitialized: List[Tuple[str, Shape, Shape]] = []
        self._loading_path = None

    def save(self, name: str, **kwargs) -> None:
        if self.dataset_metadata is not None:
            kwargs.setdefault("dataset_metadata", self.dataset_metadata)
        super().save(name, **kwargs)

    def load_for_inference(self, weights: str, dataset_hint: str = "") -> dict:
        """Load ``weights`` for evaluation or prediction; returns the checkpoint's extra data.

        Unlike fine-tuning, every class-specific weight must fit, or the predictions would come
        from untrained layers. ``dataset_hint`` ends the error message (which classes were asked
        for)."""
        extra = self.load(weights, checkpointables=[])
        if self.reinitialized:
            key, before, after = self.reinitialized[0]
            raise ValueError(
                f"checkpoint {weights!r} was trained for another number of classes than the model "
                f"({key}: {before} in the checkpoint, {after} in the model){dataset_hint}. Evaluate it "
                "on a dataset with the classes it was trained on, or fine-tune it first."
            )
        return extra

    def load(self, path, *args, **kwargs):
        self._loading_path = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading_path = None

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        mismatched = incompatible.incorrect_shapes
        others = [m for m in mismatched if not is_class_specific(m[0])]
        if others:
            listing = "\n".join(f"  {k}: {tuple(c)} in the checkpoint, {tuple(m)} in the model" for k, c, m in others)
            raise CheckpointMismatchError(
                f"checkpoint {self._loading_path!r} does not fit the model built from the config: "
                f"{len(others)} weights that do not depend on the class count have other shapes:\n"
                f"{listing}\nUse the config the checkpoint was trained with (channels, depth, "
                "head sizes); only the class-specific prediction layers may differ when fine-tuning."
            )
        self.reinitialized = [(k, tuple(c), tuple(m)) for k, c, m in mismatched]
        # Reported here, once, instead of Detectron2's per-tensor warning.
        incompatible.incorrect_shapes.clear()
        if self.reinitialized:
            self._report_reinitialized()
        return incompatible

    def _report_reinitialized(self):
        before = _class_count(self.reinitialized, which=0)
        after = _class_count(self.reinitialized, which=1)
        logger.warning(
            f"Fine-tuning from {self._loading_path}: the checkpoint has "
            f"{before if before is not None else '?'} classes, the model "
            f"{after if after is not None else '?'}. Re-initialized (not loaded) "
            f"{len(self.reinitialized)} class-specific weights:\n"
            + "\n".join(f"  {k}: {c} in the checkpoint -> {m} in the model" for k, c, m in self.reinitialized)
            + "\nAll other weights were loaded from the checkpoint."
        )
        if self.save_dir and self.save_to_disk:
            os.makedirs(self.save_dir, exist_ok=True)
            with open(os.path.join(self.save_dir, REPORT_NAME), "w") as f:
                json.dump(
                    {
                        "checkpoint": self._loading_path,
                        "checkpoint_num_classes": before,
                        "model_num_classes": after,
                        "reinitialized": [
                            {"key": k, "checkpoint_shape": list(c), "model_shape": list(m)}
                            for k, c, m in self.reinitialized
                        ],
                    },
                    f,
                    indent=2,
                )
