"""The classes a model was trained on, saved with its run, so they travel with the checkpoint.

Detectron2 keeps class names in ``MetadataCatalog``, which only knows the datasets registered in
the current process. A model fine-tuned on a custom dataset and then used where that dataset is
not registered (a predictor on plain images, ``tools/visualize.py --input a.jpg``, evaluation in
a new process) would label its detections with class indices. So a training run records its
datasets' metadata in every checkpoint (key ``dataset_metadata``) and in
``OUTPUT_DIR/dataset_metadata.json`` next to Detectron2's ``config.yaml``::

    {"format": "gn_det.dataset_metadata/1",
     "thing_classes": ["circle", "star"],        # class i of the model is thing_classes[i]
     "thing_dataset_ids": [5, 9],                # its category id in the training json
     "thing_colors": [[230, 25, 75], ...],       # when the dataset has colours
     "datasets": {"my_train": {"role": "train", "json_file": "...", "image_root": "..."}, ...}}
"""
import json
import logging
import os
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

__all__ = [
    "dataset_metadata_from_config",
    "write_dataset_metadata",
    "find_dataset_metadata",
    "as_detectron2_metadata",
    "check_dataset_classes",
]

logger = logging.getLogger(__name__)

DATASET_METADATA_NAME = "dataset_metadata.json"
FORMAT = "gn_det.dataset_metadata/1"


def _registered_metadata(name: str):
    return MetadataCatalog.get(name) if name in DatasetCatalog else None


def dataset_metadata_from_config(cfg) -> Optional[dict]:
    """What ``cfg``'s datasets say about its classes; None when no training dataset names them
    (e.g. they are not registered in this process)."""
    datasets = {}
    classes_from = None
    for role, names in (("train", cfg.DATASETS.TRAIN), ("test", cfg.DATASETS.TEST)):
        for name in names:
            meta = _registered_metadata(name)
            if meta is None:
                continue
            entry = {"role": role}
            for key in ("json_file", "image_root"):
                if meta.get(key):
                    entry[key] = meta.get(key)
            datasets.setdefault(name, entry)
            if classes_from is None and role == "train" and meta.get("thing_classes"):
                classes_from = meta
    if classes_from is None:
        return None
    classes = [str(c) for c in classes_from.thing_classes]
    id_map = classes_from.get("thing_dataset_id_to_contiguous_id") or {i: i for i in range(len(classes))}
    by_class = {int(v): int(k) for k, v in id_map.items()}
    result = {
        "format": FORMAT,
        "thing_classes": classes,
        "thing_dataset_ids": [by_class.get(i, i) for i in range(len(classes))],
        "datasets": datasets,
    }
    if classes_from.get("thing_colors"):
        result["thing_colors"] = [[int(c) for c in colour] for colour in classes_from.thing_colors]
    return result


def write_dataset_metadata(output_dir: str, metadata: dict) -> str:
    """Write ``dataset_metadata.json`` into ``output_dir`` (atomically); return its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, DATASET_METADATA_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def _valid(metadata, source: str) -> Optional[dict]:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or not metadata.get("thing_classes"):
        raise ValueError(
            f"{source} holds no gn_det dataset metadata (format {FORMAT!r} with 'thing_classes'); "
            "it was not written by gn_det or is damaged"
        )
    return metadata


def find_dataset_metadata(weights: str, checkpoint_extra: Optional[dict] = None) -> Optional[dict]:
    """The classes of the model in ``weights``: from the checkpoint itself (``checkpoint_extra``,
    what the checkpointer's ``load`` returned), else from ``dataset_metadata.json`` next to it;
    None for checkpoints that have neither (plain Detectron2, older gn_det)."""
    if checkpoint_extra and checkpoint_extra.get("dataset_metadata") is not None:
        return _valid(checkpoint_extra["dataset_metadata"], f"checkpoint {weights!r}")
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), DATASET_METADATA_NAME) if weights else ""
    if path and os.path.isfile(path):
        try:
            with open(path) as f:
                return _valid(json.load(f), path)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid json ({e})") from e
    return None


def as_detectron2_metadata(metadata: dict, name: str = "") -> Metadata:
    """A Detectron2 ``Metadata`` (what ``Visualizer`` and predictors take) with the saved classes;
    not registered in ``MetadataCatalog``."""
    ids = metadata.get("thing_dataset_ids") or list(range(len(metadata["thing_classes"])))
    result = Metadata(name=name or "checkpoint classes")
    result.set(
        thing_classes=list(metadata["thing_classes"]),
        thing_dataset_id_to_contiguous_id={int(d): i for i, d in enumerate(ids)},
    )
    if metadata.get("thing_colors"):
        result.set(thing_colors=[tuple(c) for c in metadata["thing_colors"]])
    return result


def check_dataset_classes(metadata: Optional[dict], dataset_name: str, weights: str) -> None:
    """Refuse to evaluate a model on a dataset whose classes are not the ones it was trained on,
    in the same order: COCO evaluation would score the model's class i as the dataset's class i."""
    if metadata is None:
        return
    registered = _registered_metadata(dataset_name)
    theirs = registered.get("thing_classes") if registered is not None else None
    if theirs is None or list(theirs) == list(metadata["thing_classes"]):
        return
    raise ValueError(
        f"checkpoint {weights!r} was trained on the classes {metadata['thing_classes']} (in this "
        f"order), but dataset {dataset_name!r} has {list(theirs)}; evaluation would score the model's "
        "class i as the dataset's class i. Evaluate on a json whose categories have the training "
        "names, ordered by category id as in the training json."
    )
