"""gn_det's embedded datasets, registered in Detectron2's catalogs by ``import gn_det``.

``gn_det_shapes_train`` and ``gn_det_shapes_val`` are synthetic shapes splits (see ``shapes.py``)
generated on first use into the cache directory: ``$GN_DET_CACHE_DIR`` if set, else
``~/.cache/gn_det``. Their metadata (classes, colours, json path) is known without generating,
so configs and evaluators can refer to them at once.
"""
import os
from typing import Dict, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from .coco_register import load_registered_coco, uses_registered_loader
from .shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes_split, split_dir

__all__ = [
    "CACHE_DIR_ENV",
    "BUILTIN_SHAPES_SPECS",
    "cache_dir",
    "register_shapes_dataset",
    "prepare_dataset",
    "is_generated_dataset",
]

CACHE_DIR_ENV = "GN_DET_CACHE_DIR"

# The embedded splits: different seeds, so val images are never training images.
BUILTIN_SHAPES_SPECS: Dict[str, ShapesSpec] = {
    "gn_det_shapes_train": ShapesSpec(num_images=600, seed=20180322),
    "gn_det_shapes_val": ShapesSpec(num_images=100, seed=20180323),
}

# Dataset name -> (cache root, split name, spec), for every lazily generated dataset.
_GENERATED: Dict[str, Tuple[str, str, ShapesSpec]] = {}

# Fixed colours per class for Detectron2's Visualizer (RGB).
_CLASS_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)]


def cache_dir() -> str:
    """Root directory of generated datasets (``$GN_DET_CACHE_DIR`` or ``~/.cache/gn_det``)."""
    root = os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "gn_det")
    return os.path.join(root, "datasets")


def prepare_dataset(name: str) -> None:
    """Generate ``name`` now if it is a generated dataset that is not on disk yet; else no-op.

    Detectron2's ``COCOEvaluator`` opens the metadata's ``json_file`` when it is built, before it
    asks the catalog for the images, so callers that evaluate a generated dataset call this first
    (gn_det's ``setup`` does it for every dataset in the config).
    """
    if name in _GENERATED:
        generate_shapes_split(*_GENERATED[name])


def is_generated_dataset(name: str) -> bool:
    return name in _GENERATED


def register_shapes_dataset(name: str, spec: ShapesSpec, root: str = None) -> None:
    """Register a synthetic shapes split under ``name``, generated into ``root`` on first use.

    Args:
        name: dataset name for ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
        spec: what to generate (the seed makes it deterministic).
        root: cache root; default ``cache_dir()``.
    """
    root = root or cache_dir()
    directory = split_dir(root, name, spec)
    json_file = os.path.join(directory, "annotations.json")
    image_root = os.path.join(directory, "images")
    _GENERATED[name] = (root, name, spec)

    def load():
        prepare_dataset(name)
        return load_registered_coco(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    uses_registered_loader(name, json_file)
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=list(spec.classes),
        thing_colors=[_CLASS_COLOURS[SHAPE_CLASSES.index(c)] for c in spec.classes],
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(spec.classes))},
        # The json holds RLE masks (occlusion can cut holes), which need INPUT.MASK_FORMAT bitmask.
        segmentation_format="rle",
    )


def register_builtin_datasets() -> None:
    for name, spec in BUILTIN_SHAPES_SPECS.items():
        if name not in DatasetCatalog:
            register_shapes_dataset(name, spec)
