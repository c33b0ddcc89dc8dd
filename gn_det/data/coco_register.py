"""Register the user's COCO-format datasets (name, json, image dir), e.g. from the command line.

Detectron2's ``register_coco_instances`` reads the json only when the dataset is first loaded;
this reads it at registration, so the class list (hence ``NUM_CLASSES``), non-contiguous category
ids and what will be filtered are known, checked and logged before any model is built.
"""
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

__all__ = ["CocoDatasetSummary", "register_coco_dataset", "summarize_coco_json"]

logger = logging.getLogger(__name__)


@dataclass
class CocoDatasetSummary:
    """What a COCO json holds, as Detectron2 will see it."""

    name: str
    json_file: str
    image_root: str
    num_images: int
    num_annotations: int
    num_crowd_annotations: int
    # Images with no annotation, or only crowd ones: Detectron2 drops them from training when
    # DATALOADER.FILTER_EMPTY_ANNOTATIONS is True (its default), and keeps them for evaluation.
    num_images_without_usable_annotations: int
    thing_classes: List[str]
    thing_dataset_id_to_contiguous_id: Dict[int, int]
    segmentation_format: str  # "polygon", "rle", "mixed" or "none"

    def describe(self) -> str:
        ids = sorted(self.thing_dataset_id_to_contiguous_id)
        contiguous = ids == list(range(1, len(ids) + 1))
        return (
            f"dataset {self.name!r} ({self.json_file}): {self.num_images} images, "
            f"{self.num_annotations} annotations ({self.num_crowd_annotations} crowd), "
            f"{len(self.thing_classes)} classes {self.thing_classes}, category ids {ids}"
            + ("" if contiguous else " (not contiguous: mapped to 0.." + str(len(ids) - 1) + ")")
            + f", masks: {self.segmentation_format}; "
            f"{self.num_images_without_usable_annotations} images have no usable (non-crowd) "
            "annotation and are left out of training when DATALOADER.FILTER_EMPTY_ANNOTATIONS is True"
        )


def summarize_coco_json(name: str, json_file: str, image_root: str) -> CocoDatasetSummary:
    """Read and check a COCO instances json; raise ValueError naming the file and the problem."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"dataset {name!r}: annotation json {json_file!r} does not exist")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"dataset {name!r}: image directory {image_root!r} does not exist")
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"dataset {name!r}: {json_file!r} is not valid json ({e})") from e
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(
            f"dataset {name!r}: {json_file!r} is not a COCO instances json (it needs an 'images' list, "
            "a 'categories' list and, for training or evaluation, an 'annotations' list)"
        )
    categories = coco.get("categories") or []
    if not categories:
        raise ValueError(f"dataset {name!r}: {json_file!r} has no 'categories'; at least one is needed")
    ids = [c.get("id") for c in categories]
    if any(not isinstance(i, int) for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(
            f"dataset {name!r}: category ids in {json_file!r} must be distinct integers, got {ids}"
        )
    nameless = [c["id"] for c in categories if not isinstance(c.get("name"), str)]
    if nameless:
        raise ValueError(f"dataset {name!r}: categories {nameless} in {json_file!r} have no 'name'")
    # Detectron2 orders classes by category id and maps the sorted ids to 0..K-1.
    by_id = sorted(categories, key=lambda c: c["id"])
    thing_classes = [c["name"] for c in by_id]
    id_map = {c["id"]: i for i, c in enumerate(by_id)}

    annotations = coco.get("annotations") or []
    known_ids = set(ids)
    unknown = sorted({a.get("category_id") for a in annotations} - known_ids, key=str)
    if unknown:
        raise ValueError(
            f"dataset {name!r}: annotations in {json_file!r} use category ids {unknown} that are not "
            f"in its 'categories' (ids {sorted(known_ids)})"
        )
    usable_images = {a["image_id"] for a in annotations if not a.get("iscrowd", 0)}
    formats = set()
    for a in annotations:
        segm = a.get("segmentation")
        if isinstance(segm, list) and segm:
            formats.add("polygon")
        elif isinstance(segm, dict):
            formats.add("rle")
    segmentation_format = "none" if not formats else formats.pop() if len(formats) == 1 else "mixed"
    return CocoDatasetSummary(
        name=name,
        json_file=json_file,
        image_root=image_root,
        num_images=len(coco["images"]),
        num_annotations=len(annotations),
        num_crowd_annotations=sum(1 for a in annotations if a.get("iscrowd", 0)),
        num_images_without_usable_annotations=sum(
            1 for im in coco["images"] if im.get("id") not in usable_images
        ),
        thing_classes=thing_classes,
        thing_dataset_id_to_contiguous_id=id_map,
        segmentation_format=segmentation_format,
    )


def register_coco_dataset(name: str, json_file: str, image_root: str) -> CocoDatasetSummary:
    """Register a COCO-format instances dataset under ``name`` and log what it holds.

    Registering the same name again with the same files is a no-op; with other files it is an
    error (Detectron2's catalogs cannot rebind a name).
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog:
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return summarize_coco_json(name, json_file, image_root)
        raise ValueError(
            f"dataset name {name!r} is already registered (json {meta.get('json_file')!r}); "
            f"choose another name for {json_file!r}"
        )
    summary = summarize_coco_json(name, json_file, image_root)
    register_coco_instances(
        name,
        {
            "thing_classes": summary.thing_classes,
            "thing_dataset_id_to_contiguous_id": summary.thing_dataset_id_to_contiguous_id,
            "segmentation_format": summary.segmentation_format,
        },
        json_file,
        image_root,
    )
    logger.info("Registered " + summary.describe())
    return summary
