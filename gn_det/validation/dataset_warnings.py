"""Warnings about a COCO dataset as a whole (policy.py): annotation tools' own keys, categories
no annotation uses, duplicate category names, images without annotations."""

from typing import Any, Dict, Iterator, NamedTuple, Optional, Set

__all__ = ["DatasetWarning", "dataset_warnings", "COCO_KEYS"]

# Keys of the COCO instances format (cocodataset.org/#format-data), also the optional ones
# Detectron2 or pycocotools read; anything else is an annotation tool's own ("extra-keys").
COCO_KEYS = {
    "the top level": {"info", "licenses", "images", "annotations", "categories", "type"},
    "images": {
        "id",
        "file_name",
        "width",
        "height",
        "license",
        "flickr_url",
        "coco_url",
        "date_captured",
    },
    "annotations": {
        "id",
        "image_id",
        "category_id",
        "segmentation",
        "area",
        "bbox",
        "iscrowd",
        "ignore",
        "keypoints",
        "num_keypoints",
    },
    "categories": {"id", "name", "supercategory", "keypoints", "skeleton"},
}


class DatasetWarning(NamedTuple):
    kind: str
    message: str
    image_id: Optional[Any] = None  # set for warnings about one image


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _hashable(v) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def dataset_warnings(
    data: dict, images: Dict[Any, dict], category_ids: Set[Any], bad_images: Set[Any]
) -> Iterator[DatasetWarning]:
    """The dataset-level warnings of ``data`` (a COCO dict whose top-level lists are checked);
    ``images``: its well-formed image records by id, ``category_ids``: its valid category ids,
    ``bad_images``: ids already reported as errors."""
    sections = {"the top level": [data]}
    sections.update({k: data[k] for k in ("images", "annotations", "categories")})
    for section, records in sections.items():
        extra: Dict[str, list] = {}
        for record in records:
            if isinstance(record, dict):
                for key in record.keys() - COCO_KEYS[section]:
                    extra.setdefault(key, []).append(record.get("id"))
        for key, ids in sorted(extra.items()):
            which = (
                " the top level"
                if section == "the top level"
                else (
                    f" {len(ids)} of {len(records)} {section} records (ids {ids[:5]}"
                    + (" ...)" if len(ids) > 5 else ")")
                )
            )
            yield DatasetWarning(
                "extra-keys",
                f"key {key!r} in{which} is not part of the COCO format; Detectron2 and pycocotools ignore it",
            )
    categories = [c for c in data["categories"] if isinstance(c, dict) and _is_int(c.get("id"))]
    order = {cat_id: i for i, cat_id in enumerate(sorted(category_ids))}  # Detectron2's class index
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict)}
    names: Dict[Any, list] = {}
    for cat in categories:
        names.setdefault(cat.get("name"), []).append(cat["id"])
        if cat["id"] not in used and cat["id"] in order:
            yield DatasetWarning(
                "unused-category",
                f"category id {cat['id']} {cat.get('name')!r} is used by no annotation; it still "
                f"becomes class {order[cat['id']]} ({cat.get('name')!r}) of the model",
            )
    for name, ids in names.items():
        if len(ids) > 1:
            yield DatasetWarning(
                "duplicate-category-name",
                f"categories {ids} are all named {name!r}; each becomes its own class, but tables "
                "keyed by class name (the AP report's per-category rows) cannot tell them apart",
            )
    annotated = {
        a.get("image_id")
        for a in data["annotations"]
        if isinstance(a, dict) and _hashable(a.get("image_id"))
    }
    for image_id in images:
        if image_id not in annotated and image_id not in bad_images:
            yield DatasetWarning(
                "no-annotations",
                "the image has no annotations: it is evaluated, and left out of training when "
                "DATALOADER.FILTER_EMPTY_ANNOTATIONS is True (Detectron2's default)",
                image_id,
            )
