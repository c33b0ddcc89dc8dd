"""Image files as Detectron2's ``read_image`` will see them, from their headers (and their last
bytes): size after EXIF rotation, bit depth, truncation; and the EXIF rotation of annotations
made on the stored pixels.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image, UnidentifiedImageError

from ..data.image_size import TRANSPOSING_ORIENTATIONS, exif_orientation

__all__ = ["ImageInfo", "probe_image", "probe_images", "find_image", "exif_transform"]

# Detectron2's read_image applies every EXIF orientation 2-8 with these PIL transposes.
_TRANSPOSE_METHOD = {
    2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
    6: Image.ROTATE_270, 7: Image.TRANSVERSE, 8: Image.ROTATE_90,
}
# Modes Detectron2's convert("RGB") clips to 8 bits (a 16-bit photo becomes mostly white).
_DEEP_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Where a complete file of each format ends: JPEG's EOI marker, PNG's IEND chunk.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 64
# probe_images reads this many headers in the calling thread first, and goes on with threads only
# if at least _BLOCKED_IN_SAMPLE of those reads waited for the disk.
_SAMPLE = 64
_BLOCKED_IN_SAMPLE = 8


@dataclass
class ImageInfo:
    """What ``probe_image`` found: ``error`` (missing, unreadable, truncated) or the rest."""

    error: str = ""
    missing: bool = False
    size: Tuple[int, int] = (0, 0)  # (width, height) as Detectron2 reads it, EXIF applied
    stored_size: Tuple[int, int] = (0, 0)
    orientation: int = 1
    mode: str = ""

    @property
    def deep(self) -> bool:
        return self.mode in _DEEP_MODES


def _tail(path: str, image: Image.Image) -> bytes:
    """The file's last bytes, from the file PIL has open (no second open) where it still is:
    PIL closes it once it has decoded the pixels (PNG's ``getexif`` does)."""
    fp = image.fp
    if fp is None:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - _TAIL_BYTES))
            return f.read()
    position = fp.tell()
    end = fp.seek(0, os.SEEK_END)
    fp.seek(max(0, end - _TAIL_BYTES))
    tail = fp.read()
    fp.seek(position)
    return tail


def _truncated(path: str, image: Image.Image) -> bool:
    """Whether the file stops before its format's end marker and its pixels do not decode (the
    tail is read first; only a file without the marker is decoded, as Detectron2 would)."""
    marker = _END_MARKERS.get(image.format or "")
    if marker is None or marker in _tail(path, image):
        return False
    try:
        image.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


def probe_image(path: str) -> ImageInfo:
    """Read an image file's header (and tail); never raises for a bad file."""
    try:
        with Image.open(path) as image:
            stored = image.size
            orientation = exif_orientation(image)
            info = ImageInfo(size=stored, stored_size=stored, orientation=orientation, mode=image.mode)
            if _truncated(path, image):
                return ImageInfo(error=f"image file {path} is truncated (it stops before its end "
                                       "marker and its pixels do not decode: an interrupted copy?)")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # one open, no stat first
        return ImageInfo(error=f"image file {path} does not exist", missing=True)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return ImageInfo(error=f"image file {path} is unreadable ({type(e).__name__}: {e})")
    if orientation in TRANSPOSING_ORIENTATIONS:
        info.size = (stored[1], stored[0])
    return info


def _voluntary_switches() -> Optional[int]:
    """How often this thread has waited (for the disk, here) so far; None where unknown."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    except (ImportError, AttributeError, OSError, ValueError):
        return None


def probe_images(paths: Sequence[str], max_threads: int = 8) -> List[ImageInfo]:
    """``probe_image`` of every path, in order.

    A header read from the page cache or a local SSD is CPU work in PIL's Python code (~40 us):
    threads only queue for the GIL (on the generated train2017-sized set, 118k headers took 5.8 s
    in one thread, 9.6 s with 8). A read that waits for the disk (a cold cache, network storage)
    releases the GIL while it waits, and threads overlap the waits. So the first ``_SAMPLE``
    headers are read in this thread, counting the times it waited (voluntary context switches);
    the rest go to ``max_threads`` threads only if those reads waited. The result is the same
    either way."""
    paths = list(paths)
    before = _voluntary_switches()
    infos = [probe_image(p) for p in paths[:_SAMPLE]]
    after = _voluntary_switches()
    rest = paths[_SAMPLE:]
    waited = before is None or after is None or after - before >= _BLOCKED_IN_SAMPLE
    if rest and max_threads > 1 and waited:
        with ThreadPoolExecutor(max_workers=max_threads) as pool:
            infos += pool.map(probe_image, rest)
    else:
        infos += map(probe_image, rest)
    return infos


def find_image(image_root: str, file_name: str) -> Tuple[str, Optional[str]]:
    """``(path, repaired file_name or None)``: a ``file_name`` with Windows separators that does
    not exist as written is looked for with ``/`` and then by its base name in the image root."""
    path = os.path.join(image_root, file_name)
    if "\\" not in file_name or os.path.isfile(path):
        return path, None
    for candidate in (file_name.replace("\\", "/"), file_name.replace("\\", "/").rsplit("/", 1)[-1]):
        if os.path.isfile(os.path.join(image_root, candidate)):
            return os.path.join(image_root, candidate), candidate
    return path, None


def _point_map(orientation: int, width: int, height: int) -> Callable:
    """Stored (x, y) -> displayed (x, y) for an image stored ``width`` x ``height`` (continuous
    pixel-edge coordinates; the same turn as PIL's transpose that read_image applies)."""
    return {
        2: lambda x, y: (width - x, y),
        3: lambda x, y: (width - x, height - y),
        4: lambda x, y: (x, height - y),
        5: lambda x, y: (y, x),
        6: lambda x, y: (height - y, x),
        7: lambda x, y: (height - y, width - x),
        8: lambda x, y: (y, width - x),
    }[orientation]


def exif_transform(orientation: int, stored_size: Tuple[int, int]) -> Callable[[dict], None]:
    """A function that moves one annotation (``bbox``, polygon or RLE ``segmentation``) from the
    stored frame of an EXIF-rotated image into the displayed one, in place."""
    width, height = stored_size
    move = _point_map(orientation, width, height)
    method = _TRANSPOSE_METHOD[orientation]

    def apply(ann: dict) -> None:
        segm = ann.get("segmentation")
        if isinstance(segm, list):
            moved = []
            for poly in segm:
                xs, ys = move(np.asarray(poly[0::2], float), np.asarray(poly[1::2], float))
                moved.append(np.stack([xs, ys], 1).ravel().tolist())
            ann["segmentation"] = moved
        elif isinstance(segm, dict):
            from .geometry import read_rle

            mask = mask_util.decode(read_rle(segm))
            turned = np.asfortranarray(np.asarray(Image.fromarray(mask).transpose(method)))
            rle = mask_util.encode(turned)
            ann["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        box = ann.get("bbox")
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            x, y, w, h = box
            xs, ys = move(np.array([x, x + w, x, x + w], float), np.array([y, y, y + h, y + h], float))
            ann["bbox"] = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())]

    return apply
