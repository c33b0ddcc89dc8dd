"""``check_dataset``: one dataset file in any supported format (COCO, VIA, labelme), checked.

VIA and labelme data are converted to COCO first (gn_det.data.formats), the importer's findings
decided by the same rule (policy.py); the converted json then gets exactly the COCO checks, whose
messages quote the source records. The counts cover the source's records: regions the importer
left out or refused are counted with those the COCO checks dropped.
"""

import os
from typing import Optional

from ..data.formats import DEFAULT_LABEL, convert, converted_json_path, write_converted
from ..data.register import converted_dir
from .coco_checks import CocoCheckResult, check_coco_json, recorder
from .report import ValidationReport

__all__ = ["check_dataset"]


def check_dataset(
    path: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    skip_invalid: bool = False,
    strict: bool = False,
    unlabeled_class: str = DEFAULT_LABEL,
    **coco_options,
) -> CocoCheckResult:
    """Check a dataset file (COCO json, VIA json, labelme file or folder) and its images; report
    every finding. Arguments as in ``check_coco_json``; ``unlabeled_class`` names the one class
    of VIA / labelme data in which no region has a label. For converted data, ``result.data`` is
    the converted COCO dict (repaired, dropped records left out)."""
    name = dataset_name or path
    report = ValidationReport()
    record = recorder(report, strict, skip_invalid)
    fmt, builder = convert(path, image_root, record, unlabeled_class, cache=os.path.join(converted_dir(), "images"))
    if builder is None:
        return check_coco_json(path, image_root, dataset_name=dataset_name, skip_invalid=skip_invalid, strict=strict,
                               **coco_options)
    coco = builder.coco() if not any(p.file_level for p in builder.problems) else None
    if coco is None or not builder.images:
        if coco is not None:
            report.add("json-structure", path, f"no image of the {fmt} data could be read")
        return CocoCheckResult(report)
    report.checked.append(f"{fmt} data {path} converted to COCO")
    converted = write_converted(coco, converted_json_path(name, path, image_root, converted_dir()))
    result = check_coco_json(converted, image_root, dataset_name=name, skip_invalid=skip_invalid, strict=strict,
                             **coco_options)
    report.extend(result.report)
    result.report = report
    # The source's records: those the importer did not convert count too.
    counts = result.counts
    refused_images = builder.images_in - len(builder.images)
    counts.annotations_in = builder.records_in
    counts.images_in = builder.images_in
    for kind, n in (("unlabeled-region", builder.unlabeled_dropped), ("ignored-label", builder.ignored)):
        if n:
            counts.annotations_dropped += n
            counts.dropped_by_kind[kind] = n
    lost = builder.records_in - len(coco["annotations"]) - builder.unlabeled_dropped - builder.ignored
    if skip_invalid:
        counts.annotations_dropped += lost
        counts.images_dropped += refused_images
        if lost:
            counts.dropped_by_kind[f"{fmt} records refused"] = lost
    else:
        counts.skippable_annotations += lost
        counts.skippable_images += refused_images
    report.counts[name] = counts
    if not report.ok:
        result.data = None
        result.metadata = None
    return result
