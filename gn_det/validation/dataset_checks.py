"""``check_dataset``: the checks of one dataset file in any supported format (COCO, VIA, labelme).

VIA and labelme data are converted to COCO first (gn_det.data.formats); records that cannot be
converted are errors named by their source (file, key, region / shape), and the converted json
then gets exactly the COCO checks, whose messages quote the source record too.
"""

from typing import Optional

from ..data.formats import convert, converted_json_path, write_converted
from ..data.register import converted_dir
from .coco_checks import CocoCheckResult, check_coco_json
from .report import ValidationReport

__all__ = ["check_dataset"]


def check_dataset(
    path: str,
    image_root: str,
    *,
    dataset_name: Optional[str] = None,
    skip_invalid: bool = False,
    strict: bool = False,
    **coco_options,
) -> CocoCheckResult:
    """Check a dataset file (COCO json, VIA json, labelme file or folder) and its images; report
    every problem. Arguments as in ``check_coco_json``; for converted data, ``result.data`` is
    the converted COCO dict (repaired, and without dropped records under ``skip_invalid``)."""
    fmt, builder = convert(path, image_root)
    if builder is None:
        return check_coco_json(
            path,
            image_root,
            dataset_name=dataset_name,
            skip_invalid=skip_invalid,
            strict=strict,
            **coco_options,
        )
    name = dataset_name or path
    conversion = ValidationReport()
    for p in builder.errors:
        conversion.add(p.kind, p.where, p.message, dropped=skip_invalid and p.record_level)
    if any(not p.record_level for p in builder.errors):
        return CocoCheckResult(conversion)  # the file as a whole cannot be read
    conversion.checked.append(f"{fmt} data {path} converted to COCO")
    converted = write_converted(
        builder.coco(), converted_json_path(name, path, image_root, converted_dir())
    )
    result = check_coco_json(
        converted,
        image_root,
        dataset_name=name,
        skip_invalid=skip_invalid,
        strict=strict,
        **coco_options,
    )
    conversion.extend(result.report)
    result.report = conversion
    dropped = sum(1 for p in builder.errors if p.record_level)
    if skip_invalid and dropped:
        conversion.dropped.setdefault(name, {})[f"{fmt} records not converted"] = dropped
    if conversion.errors:
        result.data = None
    return result
