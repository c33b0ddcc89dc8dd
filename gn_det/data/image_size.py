"""An image's size as Detectron2 will see it, from its header only."""

from typing import Tuple

from PIL import Image

__all__ = ["read_image_size"]

# EXIF orientations that rotate by 90 degrees (Detectron2's read_image applies them, so the size
# Detectron2 checks against the json is the transposed one).
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


def read_image_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of an image as Detectron2's ``read_image`` will see it (EXIF rotation
    applied), reading only the header (PIL opens lazily; pixels are not decoded)."""
    with Image.open(path) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        except Exception:  # a broken EXIF block: Detectron2 ignores it too
            orientation = 1
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height
