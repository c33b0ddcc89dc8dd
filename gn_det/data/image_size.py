"""An image's size as Detectron2 will see it, from its header only."""

from typing import Tuple

from PIL import Image

__all__ = ["read_image_size", "exif_orientation", "TRANSPOSING_ORIENTATIONS"]

# EXIF orientations that rotate by 90 degrees (Detectron2's read_image applies them, so the size
# Detectron2 checks against the json is the transposed one).
TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(image: Image.Image) -> int:
    """An open image's EXIF orientation (1 when it has none, or a broken EXIF block, which
    Detectron2's read_image ignores too)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001
        return 1


def read_image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image as Detectron2's ``read_image`` will see it (EXIF rotation
    applied), reading only the header (PIL opens lazily; pixels are not decoded)."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = exif_orientation(image)
    if orientation in TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height
