"""``validate``: every check a run needs, before anything is built; one report of all problems."""

import json
import logging
import os
from typing import Callable, Dict, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..checkpoint.atomic import AtomicFileWriter
from ..data.coco_register import hand_over_parsed, read_with_registered_loader
from ..data.formats.common import DEFAULT_LABEL
from .checkpoint_checks import check_checkpoint
from .coco_checks import check_coco_json
from .config_checks import check_config, check_config_sources, default_base_cfg
from .report import ValidationReport

__all__ = [
    "validate",
    "check_run",
    "validate_datasets",
    "use_cleaned_datasets",
    "checkpoint_to_load",
    "cleaned_datasets_dir",
    "write_cleaned_dataset",
]

logger = logging.getLogger(__name__)


def checkpoint_to_load(cfg: CfgNode, resume: bool) -> Optional[tuple]:
    """``(where, path)`` of the file training will load, as DefaultTrainer.resume_or_load picks
    it: ``OUTPUT_DIR/last_checkpoint``'s target when resuming and it exists, else MODEL.WEIGHTS;
    None when nothing is loaded."""
    if resume and cfg.OUTPUT_DIR:
        tag = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
        if os.path.isfile(tag):
            with open(tag) as f:
                name = f.read().strip()
            return f"{tag} (--resume)", os.path.join(cfg.OUTPUT_DIR, name)
    if cfg.MODEL.WEIGHTS:
        return "MODEL.WEIGHTS", cfg.MODEL.WEIGHTS
    return None


def _coco_source(name: str) -> Optional[tuple]:
    metadata = MetadataCatalog.get(name)
    json_file = getattr(metadata, "json_file", None)
    image_root = getattr(metadata, "image_root", None)
    if json_file and image_root is not None:
        return json_file, image_root
    return None


def use_cleaned_datasets(cleaned: Dict[str, str]) -> None:
    """Point each dataset ``name`` at ``cleaned[name]`` (the repaired / cleaned json validation
    wrote), keeping its image root and metadata. Call it in every process that trains (launch's
    workers re-import and re-register their datasets)."""
    for name, json_file in cleaned.items():
        metadata = MetadataCatalog.get(name)
        read_with_registered_loader(name, json_file, metadata.get("image_root", ""))


# Datasets validated clean, keyed by their json's path, size and mtime and the check options: a
# resumed run does not re-read an unchanged COCO-sized dataset (minutes) every time.
_CLEAN_CACHE_NAME = "clean_datasets.json"


def _clean_key(json_file: str, image_root: str, **options) -> dict:
    stat = os.stat(json_file)
    return {
        "json_file": os.path.abspath(json_file),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "image_root": os.path.abspath(image_root),
        **options,
    }


def _read_clean_cache(path: str) -> list:
    try:
        with open(path) as f:
            entries = json.load(f)
        return entries if isinstance(entries, list) else []
    except (OSError, ValueError):
        return []


def cleaned_datasets_dir(cfg: CfgNode) -> str:
    """Where --skip-invalid writes cleaned jsons (and the clean-dataset cache): OUTPUT_DIR/validated_datasets."""
    return os.path.join(cfg.OUTPUT_DIR or ".", "validated_datasets")


def write_cleaned_dataset(directory: str, name: str, data: dict) -> str:
    """Write a dataset's cleaned json atomically to ``directory/<name>.json``; return the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}.json")
    with AtomicFileWriter(path, "w") as f:
        json.dump(data, f)
    return path


def validate_datasets(
    cfg: CfgNode,
    *,
    training: bool = True,
    skip_invalid: bool = False,
    strict: bool = False,
    check_images: bool = True,
    cleaned_dir: Optional[str] = None,
    apply_cleaned: bool = True,
    prepare_dataset: Optional[Callable[[str], None]] = None,
    use_cache: bool = True,
    skip_names: Sequence[str] = (),
    report: Optional[ValidationReport] = None,
) -> ValidationReport:
    """Check the COCO json (and images) of every registered dataset the config uses.

    A dataset found clean is remembered in ``OUTPUT_DIR/validated_datasets/clean_datasets.json``
    (json path, size, mtime, options); while the json is unchanged, later runs into the same
    OUTPUT_DIR (e.g. --resume) skip it. The image headers are remembered there too
    (header_cache.py): a dataset checked again reads only the image files changed since.
    ``use_cache=False`` re-checks everything.

    Datasets with repairs or dropped records (policy.py) are written as they will be trained to
    ``cleaned_dir`` (default ``OUTPUT_DIR/validated_datasets``); ``strict`` makes every warning,
    repair and drop an error. ``report.cleaned_datasets`` maps their names to the written files,
    and with ``apply_cleaned`` they are re-registered to read them in this process (other
    processes: use_cleaned_datasets(report.cleaned_datasets)). The json as read is handed to the
    first load of the dataset in this process. ``prepare_dataset(name)`` is called first for each
    dataset (e.g. to generate it on disk). Datasets in ``skip_names`` were checked already.
    """
    report = report if report is not None else ValidationReport()
    names = (list(cfg.DATASETS.TRAIN) if training else []) + list(cfg.DATASETS.TEST)
    registered = set(DatasetCatalog.list())
    out_dir = cleaned_dir or cleaned_datasets_dir(cfg)
    cache_path = os.path.join(out_dir, _CLEAN_CACHE_NAME) if use_cache else ""
    clean_cache = _read_clean_cache(cache_path) if cache_path else []
    seen = set(skip_names)
    for name in names:
        if name in seen or name not in registered:
            continue  # unregistered names are reported by check_config
        seen.add(name)
        if prepare_dataset is not None:
            prepare_dataset(name)
        source = _coco_source(name)
        if source is None:
            report.checked.append(f"dataset {name}: not registered from a COCO json, records not checked here")
            continue
        json_file, image_root = source
        options = dict(
            require_masks=bool(cfg.MODEL.MASK_ON),
            for_evaluation=name in cfg.DATASETS.TEST,
            for_training=training and name in cfg.DATASETS.TRAIN,
            check_images=check_images,
            strict=strict,
            mask_format=cfg.INPUT.MASK_FORMAT,
        )
        key = _clean_key(json_file, image_root, **options) if cache_path and os.path.isfile(json_file) else None
        if key is not None and key in clean_cache:
            report.checked.append(f"dataset {name}: {json_file} unchanged since validated clean (cache {cache_path})")
            continue
        result = check_coco_json(json_file, image_root, dataset_name=name, skip_invalid=skip_invalid,
                                 header_cache_dir=out_dir if use_cache else None, **options)
        report.extend(result.report)
        if key is not None and not result.report.problems:
            clean_cache.append(key)
            os.makedirs(out_dir, exist_ok=True)
            with AtomicFileWriter(cache_path, "w") as f:
                json.dump(clean_cache, f, indent=1)
        if result.data is None:
            continue
        if result.changed:
            json_file = write_cleaned_dataset(out_dir, name, result.data)
            report.cleaned_datasets[name] = json_file
            if apply_cleaned:
                use_cleaned_datasets({name: json_file})
        hand_over_parsed(name, json_file, result.data, will_register=result.changed)
    if training:
        _check_classes_agree(names, registered, report)
    return report


def _check_classes_agree(names: Sequence[str], registered: set, report: ValidationReport) -> None:
    """Training and test datasets must have the same classes (the model has one class list);
    found here, before launch, rather than in each worker's setup."""
    found = []
    for name in dict.fromkeys(names):
        classes = MetadataCatalog.get(name).get("thing_classes") if name in registered else None
        if classes is not None:
            found.append((name, list(classes)))
    for name, classes in found[1:]:
        first, first_classes = found[0]
        if classes != first_classes:
            hint = (
                f"; VIA / labelme data in which no region has a label form the class {DEFAULT_LABEL!r} "
                "(--unlabeled-class names it)"
                if DEFAULT_LABEL in classes + first_classes
                else ""
            )
            report.add(
                "dataset-classes",
                f"DATASETS.TRAIN / DATASETS.TEST: {first!r} and {name!r}",
                f"datasets disagree on their classes: {first!r} has {first_classes}, {name!r} has "
                f"{classes}; train and evaluate on datasets with the same categories{hint}",
            )


def validate(
    config_file: Optional[str] = None,
    opts: Sequence[str] = (),
    *,
    cfg: Optional[CfgNode] = None,
    base_cfg: Callable[[], CfgNode] = default_base_cfg,
    num_processes: int = 1,
    resume: bool = False,
    eval_only: bool = False,
    skip_invalid: bool = False,
    strict: bool = False,
    trust_checkpoint: Optional[bool] = None,
    check_datasets: bool = True,
    check_images: bool = True,
    cleaned_dir: Optional[str] = None,
    apply_cleaned: bool = True,
    prepare_dataset: Optional[Callable[[str], None]] = None,
) -> ValidationReport:
    """Run every check a training/evaluation run needs and report ALL problems found.

    Args:
        config_file, opts: the YAML and ``KEY VALUE`` overrides (as tools take them); checked key
            by key, then merged like Detectron2 does. Or pass an already merged ``cfg``.
        base_cfg: builds the defaults the YAML is merged into (Detectron2's + gn_det's).
        num_processes: ``--num-gpus`` x ``--num-machines``.
        resume: check the checkpoint ``--resume`` would load (``OUTPUT_DIR/last_checkpoint``).
        eval_only: skip training-only checks (DATASETS.TRAIN, batch size).
        skip_invalid: drop invalid dataset records (listed and counted) instead of failing.
        strict: make every dataset warning an error (policy.py).
        trust_checkpoint: allow checkpoints that need plain pickle (None: $GN_DET_TRUST_CHECKPOINT).
        check_datasets / check_images: check dataset jsons / image headers.
        cleaned_dir: where skip_invalid writes cleaned jsons.
        apply_cleaned: re-register datasets to their cleaned jsons in this process.
        prepare_dataset: called with each dataset name before its json is checked.

    Returns:
        A ValidationReport; ``report.ok`` says whether the run can start, ``report.cfg`` is the
        merged config (None if it could not be built), ``report.raise_if_failed()`` raises a
        ValidationError listing everything.
    """
    report = ValidationReport()
    if cfg is None:
        cfg, _ = check_config_sources(config_file, opts, base_cfg=base_cfg, report=report)
    report.cfg = cfg
    return check_run(
        cfg,
        report,
        num_processes=num_processes,
        resume=resume,
        eval_only=eval_only,
        skip_invalid=skip_invalid,
        strict=strict,
        trust_checkpoint=trust_checkpoint,
        check_datasets=check_datasets,
        check_images=check_images,
        cleaned_dir=cleaned_dir,
        apply_cleaned=apply_cleaned,
        prepare_dataset=prepare_dataset,
    )


def check_run(
    cfg: Optional[CfgNode],
    report: ValidationReport,
    *,
    num_processes: int = 1,
    resume: bool = False,
    eval_only: bool = False,
    skip_invalid: bool = False,
    strict: bool = False,
    trust_checkpoint: Optional[bool] = None,
    check_datasets: bool = True,
    check_images: bool = True,
    cleaned_dir: Optional[str] = None,
    apply_cleaned: bool = True,
    prepare_dataset: Optional[Callable[[str], None]] = None,
    skip_names: Sequence[str] = (),
) -> ValidationReport:
    """The checks after the config is merged (``cfg`` None when it could not be), into
    ``report``: config values, every dataset the run reads (except ``skip_names``, already
    checked by the caller) and the checkpoint it loads. Arguments as in ``validate``."""
    training = not eval_only
    check_config(cfg, num_processes=num_processes, report=report, training=training, known_datasets=skip_names)
    if check_datasets:
        validate_datasets(
            cfg,
            training=training,
            skip_invalid=skip_invalid,
            strict=strict,
            check_images=check_images,
            cleaned_dir=cleaned_dir,
            apply_cleaned=apply_cleaned,
            prepare_dataset=prepare_dataset,
            skip_names=skip_names,
            report=report,
        )
    target = checkpoint_to_load(cfg, resume)
    if target is not None:
        where, path = target
        check_checkpoint(path, where=where, trust=trust_checkpoint, report=report)
    return report
