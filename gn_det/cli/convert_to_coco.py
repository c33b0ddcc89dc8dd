"""Write a VIA json or labelme files as a COCO instances json, checked like any dataset.

    gn-det-convert-to-coco via_region_data.json images/ out.json
    gn-det-convert-to-coco labelme_folder/ images/ out.json [--strict]

Classes are the labels, sorted (category ids 1..K); the validation report (errors, warnings,
their repairs) is printed. With repairs (e.g. border-crossing polygons clipped) the json written
is the repaired one, which is what training reads. Exit status: 0 when written, 1 when the
data has errors (nothing is written). ``--dataset NAME FILE IMAGE_DIR`` does the same
conversion by itself; this tool is for users who want the file.
"""

import argparse
import json
import sys

from ..data.formats import detect_format, write_converted
from ..validation import check_dataset

__all__ = ["main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "source", help="VIA project/region json, a labelme json or a folder of them"
    )
    parser.add_argument("image_dir", help="the folder the images are in")
    parser.add_argument("output", help="the COCO json to write")
    parser.add_argument("--strict", action="store_true", help="treat every warning as an error")
    parser.add_argument("--no-image-check", action="store_true", help="do not open image headers")
    args = parser.parse_args(argv)
    fmt, _ = detect_format(args.source)
    if fmt == "coco":
        print(
            f"{args.source} is a COCO json already (neither VIA nor labelme); nothing to convert",
            file=sys.stderr,
        )
        return 1
    result = check_dataset(
        args.source,
        args.image_dir,
        strict=args.strict,
        check_images=not args.no_image_check,
        require_masks=True,
    )
    print(result.report.format(max_per_kind=20))
    if result.data is None:
        print("Not written: fix the errors above.", file=sys.stderr)
        return 1
    write_converted(result.data, args.output)
    classes = [c["name"] for c in sorted(result.data["categories"], key=lambda c: c["id"])]
    print(
        f"Wrote {args.output}: {len(result.data['images'])} images, "
        f"{len(result.data['annotations'])} annotations, {len(classes)} classes {json.dumps(classes)}"
    )
    return 0

