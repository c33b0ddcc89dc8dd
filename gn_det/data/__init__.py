"""Datasets: the embedded synthetic shapes splits and registration of COCO, VIA and labelme data.

Importing this module (``import gn_det`` does) registers ``gn_det_shapes_train`` and
``gn_det_shapes_val``; their files are generated on first use.
"""
from .builtin import (
    BUILTIN_SHAPES_SPECS,
    CACHE_DIR_ENV,
    cache_dir,
    is_generated_dataset,
    prepare_dataset,
    register_builtin_datasets,
    register_shapes_dataset,
)
from .coco_register import CocoDatasetSummary, register_coco_dataset, summarize_coco_json
from .register import register_dataset
from .shapes import SHAPE_CLASSES, ShapesSpec, draw_shapes_image, generate_shapes_split

register_builtin_datasets()

__all__ = [
    "BUILTIN_SHAPES_SPECS",
    "CACHE_DIR_ENV",
    "cache_dir",
    "is_generated_dataset",
    "prepare_dataset",
    "register_shapes_dataset",
    "CocoDatasetSummary",
    "register_coco_dataset",
    "register_dataset",
    "summarize_coco_json",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "draw_shapes_image",
    "generate_shapes_split",
]
