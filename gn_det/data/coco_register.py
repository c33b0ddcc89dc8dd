"""Register the user's COCO-format datasets (name, json, image dir), e.g. from the command line.

Detectron2's ``register_coco_instances`` reads the json only when the dataset is first loaded;
this reads it at registration, so the class list (hence ``NUM_CLASSES``), non-contiguous category
ids and what will be filtered are known, checked and logged before any model is built.

Reading a COCO-sized json takes tens of seconds, so it is read once per process: validation
(gn_det.validation) reads and checks it and registers the dataset from what it read
(``metadata``); training processes that ``launch`` starts register from that metadata without
reading the file; and in a single-process run the parsed json itself is handed to Detectron2's
``load_coco_json`` (``parsed``), which then builds its records without reading the file again.
"""
import contextlib
import functools
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils import comm

from .gc_pause import paused_gc
from .handoff import read_handoff

__all__ = [
    "CocoDatasetSummary",
    "register_coco_dataset",
    "summarize_coco_json",
    "summarize_coco_dict",
    "take_parsed_jsons",
    "use_handoff",
    "hand_over_parsed",
    "read_with_registered_loader",
    "load_registered_coco",
    "uses_registered_loader",
]

logger = logging.getLogger(__name__)

# Parsed (and checked) jsons waiting for the first load of their dataset in this process, by
# absolute path; each is handed to Detectron2's loader once, then forgotten.
_PARSED: Dict[str, dict] = {}
_SUMMARIES: Dict[str, "CocoDatasetSummary"] = {}
# Datasets whose catalog entry is load_registered_coco, by name: their json file.
_LOADERS: Dict[str, str] = {}
# Jsons the launching process validated and handed over as files (handoff.py), by absolute path.
_HANDOFF: Dict[str, dict] = {}


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
    # Masks of the trained (non-crowd) annotations: "polygon", "rle", "mixed" or "none". Crowd
    # regions are skipped by Detectron2's mapper, so their RLE does not need the bitmask format.
    segmentation_format: str

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

    def metadata(self) -> dict:
        """What registration needs, to register this dataset again elsewhere without reading it."""
        return asdict(self)


def summarize_coco_dict(name: str, json_file: str, image_root: str, coco: dict) -> CocoDatasetSummary:
    """The summary of a parsed COCO dict whose categories and annotations are well formed
    (checked): classes in category-id order, ids mapped to 0..K-1, as Detectron2's loader does."""
    by_id = sorted(coco["categories"], key=lambda c: c["id"])
    usable_images, crowd, formats = set(), 0, set()
    for a in coco.get("annotations") or []:
        if a.get("iscrowd", 0):
            crowd += 1
            continue
        usable_images.add(a.get("image_id"))
        segm = a.get("segmentation")
        if isinstance(segm, dict):
            formats.add("rle")
        elif isinstance(segm, list) and segm:
            formats.add("polygon")
    return CocoDatasetSummary(
        name=name,
        json_file=json_file,
        image_root=image_root,
        num_images=len(coco["images"]),
        num_annotations=len(coco.get("annotations") or []),
        num_crowd_annotations=crowd,
        num_images_without_usable_annotations=sum(1 for im in coco["images"] if im.get("id") not in usable_images),
        thing_classes=[c["name"] for c in by_id],
        thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(by_id)},
        segmentation_format="none" if not formats else formats.pop() if len(formats) == 1 else "mixed",
    )


def summarize_coco_json(name: str, json_file: str, image_root: str) -> CocoDatasetSummary:
    """Read and check a COCO instances json; raise ValueError naming the file and the problem."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"dataset {name!r}: annotation json {json_file!r} does not exist")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"dataset {name!r}: image directory {image_root!r} does not exist")
    try:
        with open(json_file) as f, paused_gc():
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
        raise ValueError(f"dataset {name!r}: category ids in {json_file!r} must be distinct integers, got {ids}")
    nameless = [c["id"] for c in categories if not isinstance(c.get("name"), str)]
    if nameless:
        raise ValueError(f"dataset {name!r}: categories {nameless} in {json_file!r} have no 'name'")
    unknown = sorted({a.get("category_id") for a in coco.get("annotations") or []} - set(ids), key=str)
    if unknown:
        raise ValueError(
            f"dataset {name!r}: annotations in {json_file!r} use category ids {unknown} that are not "
            f"in its 'categories' (ids {sorted(ids)})"
        )
    return summarize_coco_dict(name, json_file, image_root, coco)


@contextlib.contextmanager
def _coco_api_from_memory(json_file: str, parsed: dict):
    """While Detectron2's ``load_coco_json`` runs, its ``COCO(json_file)`` indexes ``parsed``
    instead of reading the file again: the same records, half the time. pycocotools' class is
    swapped for a subclass for this call only (load_coco_json imports it when called)."""
    import pycocotools.coco as coco_module

    original = coco_module.COCO

    class _ParsedCOCO(original):
        def __init__(self, annotation_file=None):
            if annotation_file is not None and os.path.abspath(annotation_file) == json_file:
                super().__init__()
                self.dataset = parsed
                self.createIndex()
            else:
                super().__init__(annotation_file)

    coco_module.COCO = _ParsedCOCO
    try:
        yield
    finally:
        coco_module.COCO = original


def load_registered_coco(json_file: str, image_root: str, name: str) -> List[dict]:
    """Detectron2's ``load_coco_json``, given the json parsed already in this process if there is
    one. Datasets registered with it as their loader: see ``uses_registered_loader``."""
    parsed = _PARSED.pop(os.path.abspath(json_file), None)
    # The json and the records are trees of dicts and lists: the collector's walks over them (40 %
    # of Detectron2's load of a COCO-sized json) find nothing to collect (gc_pause.py).
    with paused_gc():
        handoff = _HANDOFF.pop(os.path.abspath(json_file), None)
        if parsed is None and handoff is not None:
            parsed = read_handoff(os.path.abspath(json_file), handoff, comm.get_local_rank())
        if parsed is None:
            return load_coco_json(json_file, image_root, name)
        with _coco_api_from_memory(json_file, parsed):
            return load_coco_json(json_file, image_root, name)


def uses_registered_loader(name: str, json_file: str) -> None:
    """Record that dataset ``name``'s catalog entry reads ``json_file`` with
    ``load_registered_coco`` (so that ``hand_over_parsed`` may give it a parsed json)."""
    _LOADERS[name] = os.path.abspath(json_file)


def hand_over_parsed(name: str, json_file: str, parsed: dict, will_register: bool = False) -> None:
    """Hand ``parsed`` (``json_file``'s content, as validation read it) to the first load of
    dataset ``name`` in this process, if gn_det's loader reads it (else nothing would take it),
    or ``will_register``: it is about to be registered to read ``json_file``."""
    json_file = os.path.abspath(json_file)
    if will_register or _LOADERS.get(name) == json_file:
        _PARSED[json_file] = parsed


def read_with_registered_loader(name: str, json_file: str, image_root: str, metadata: Optional[dict] = None) -> None:
    """Point dataset ``name`` at ``json_file`` (e.g. a repaired copy), read by gn_det's loader;
    its other metadata is kept. Registers it when it is not registered yet."""
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    old = MetadataCatalog.get(name).as_dict() if name in DatasetCatalog else dict(metadata or {})
    if old.get("json_file") == json_file and _LOADERS.get(name) == json_file:
        return
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    for key in ("name", "json_file", "image_root", "evaluator_type"):
        old.pop(key, None)
    DatasetCatalog.register(name, functools.partial(load_registered_coco, json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco", **old)
    _LOADERS[name] = json_file


def take_parsed_jsons() -> Dict[str, dict]:
    """The parsed jsons waiting for their first load in this process (by absolute path), which
    this process hands over instead (handoff.py); forgotten here."""
    taken = dict(_PARSED)
    _PARSED.clear()
    return taken


def use_handoff(entries: Dict[str, dict]) -> None:
    """In a training process: the first load of each json in ``entries`` (``handoff.handed_over``'s,
    from the launching process) reads the parsed json it validated instead of the text."""
    _HANDOFF.update(entries)


def register_coco_dataset(name: str, json_file: str, image_root: str, metadata: Optional[dict] = None,
                          parsed: Optional[dict] = None) -> CocoDatasetSummary:
    """Register a COCO-format instances dataset under ``name`` and log what it holds.

    ``metadata`` (a ``CocoDatasetSummary.metadata()`` of this json, e.g. from validation)
    registers it without reading the file; ``parsed`` (the json's content, as validation read it)
    is handed to Detectron2's loader the first time the dataset is loaded in this process.
    Registering the same name again with the same files is a no-op; with other files it is an
    error (Detectron2's catalogs cannot rebind a name).
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if name in DatasetCatalog:
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            if parsed is not None:
                _PARSED[json_file] = parsed
            if name in _SUMMARIES:
                return _SUMMARIES[name]
            return summarize_coco_json(name, json_file, image_root)
        raise ValueError(
            f"dataset name {name!r} is already registered (json {meta.get('json_file')!r}); "
            f"choose another name for {json_file!r}"
        )
    if metadata is not None:
        fields = dict(metadata, name=name, json_file=json_file, image_root=image_root)
        fields["thing_dataset_id_to_contiguous_id"] = {
            int(k): v for k, v in fields["thing_dataset_id_to_contiguous_id"].items()}
        summary = CocoDatasetSummary(**fields)
    else:
        summary = summarize_coco_json(name, json_file, image_root)
    DatasetCatalog.register(name, functools.partial(load_registered_coco, json_file, image_root, name))
    _LOADERS[name] = json_file
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
        thing_classes=summary.thing_classes,
        thing_dataset_id_to_contiguous_id=summary.thing_dataset_id_to_contiguous_id,
        segmentation_format=summary.segmentation_format,
    )
    if parsed is not None:
        _PARSED[json_file] = parsed
    _SUMMARIES[name] = summary
    logger.info("Registered " + summary.describe())
    return summary
