"""Register a user's dataset from a COCO json, a VIA json or labelme files: ``--dataset NAME FILE IMAGE_DIR``.

VIA and labelme are converted to a COCO json (gn_det.data.formats) under the cache directory
(``$GN_DET_CACHE_DIR``), at a path fixed by the source and image folder, so that every process
of a run registers the same file; from then on the dataset is a COCO dataset like any other:
same registration, validation, training and evaluation. The tools validate first
(gn_det.validation) and register what validation read; this is the direct way in.
"""

import logging
import os
from typing import Optional

from detectron2.data import MetadataCatalog

from .builtin import cache_dir
from .coco_register import CocoDatasetSummary, register_coco_dataset
from .formats import DEFAULT_LABEL, convert, converted_json_path, write_converted

__all__ = ["register_dataset", "converted_dir"]

logger = logging.getLogger(__name__)


def converted_dir() -> str:
    """Where converted VIA / labelme datasets (and images they embed) are written."""
    return os.path.join(cache_dir(), "converted")


def register_dataset(name: str, path: str, image_root: str, *, metadata: Optional[dict] = None,
                     parsed: Optional[dict] = None, unlabeled_class: str = DEFAULT_LABEL) -> CocoDatasetSummary:
    """Register ``path`` (COCO json, VIA json, or a labelme file or folder) as dataset ``name``.

    Classes of VIA / labelme data are their labels, sorted (category ids 1..K); regions without
    a label are left out when others have one, else form the class ``unlabeled_class``. Raises
    ValueError naming every record the dataset rule refuses (file, key, which region / shape).
    ``metadata`` / ``parsed``: a COCO json as validation read it (see ``register_coco_dataset``).
    """
    if metadata is not None:
        return register_coco_dataset(name, path, image_root, metadata, parsed)
    fmt, builder = convert(path, image_root, None, unlabeled_class,
                           cache=os.path.join(converted_dir(), "images"))
    if builder is None:
        return register_coco_dataset(name, path, image_root)
    coco = builder.coco() if not any(p.file_level for p in builder.problems) else None
    if builder.errors:
        shown = "\n".join(f"  {p.where}: {p.message}" for p in builder.errors[:20])
        more = len(builder.errors) - 20
        raise ValueError(
            f"dataset {name!r}: {len(builder.errors)} record(s) of the {fmt} data {path} cannot be "
            f"converted:\n{shown}" + (f"\n  ... and {more} more" if more > 0 else "")
        )
    target = write_converted(coco, converted_json_path(name, path, image_root, converted_dir()))
    summary = register_coco_dataset(name, target, image_root)
    MetadataCatalog.get(name).set(source_file=os.path.abspath(path), source_format=fmt)
    logger.info(f"dataset {name!r}: {fmt} data {path} converted to the COCO json {target}")
    return summary
