"""Image headers remembered between runs into the same OUTPUT_DIR.

A dataset found clean is not checked again on ``--resume`` (validate.py's clean-dataset cache),
but one with repairs, drops or warnings is, and so is a json edited between runs (fixing what
the last validation found): every time, all of its image headers were read again, 118k for
train2017 (5 s from the page cache, much longer from network storage). Here the header of each
file is remembered with the file's size, modification and change times and inode
(``os.stat``); a file whose four values are unchanged is not opened again, any other is read
as before. Only what ``probe_image`` found in readable files is kept: a missing, unreadable or
truncated file is read again every time (it is an error, the run stops, and the user fixes it).

One cache file per image folder: ``<directory>/image_headers_<hash of the folder>.json``.
"""

import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence

from ..checkpoint.atomic import AtomicFileWriter
from .image_files import ImageInfo, probe_images

__all__ = ["header_cache_file", "probe_images_cached"]

_VERSION = 1


def header_cache_file(directory: str, image_root: str) -> str:
    """The cache file of ``image_root`` in ``directory``."""
    digest = hashlib.sha1(os.path.abspath(image_root).encode()).hexdigest()[:16]
    return os.path.join(directory, f"image_headers_{digest}.json")


def _stat_key(path: str) -> Optional[list]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read(cache_file: str) -> Dict[str, list]:
    try:
        with open(cache_file) as f:
            content = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict) or content.get("version") != _VERSION:
        return {}
    entries = content.get("entries")
    return entries if isinstance(entries, dict) else {}


def probe_images_cached(paths: Sequence[str], cache_file: str, max_threads: int = 8) -> List[ImageInfo]:
    """``probe_images(paths)``, reading only the files that are not in ``cache_file`` as they are
    now; the cache is rewritten when a file was read."""
    entries = _read(cache_file)
    infos: List[Optional[ImageInfo]] = []
    todo, keys = [], []
    for path in paths:
        key = _stat_key(path)
        hit = entries.get(path) if key is not None else None
        if isinstance(hit, list) and len(hit) == 10 and hit[:4] == key:
            infos.append(ImageInfo(size=(hit[4], hit[5]), stored_size=(hit[6], hit[7]), orientation=hit[8], mode=hit[9]))
        else:
            infos.append(None)
            todo.append(len(infos) - 1)
            keys.append(key)
    learned = False
    for i, key, info in zip(todo, keys, probe_images([paths[i] for i in todo], max_threads)):
        infos[i] = info
        if key is not None and not info.error:
            entries[paths[i]] = key + [*info.size, *info.stored_size, info.orientation, info.mode]
            learned = True
    if learned:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
            with AtomicFileWriter(cache_file, "w") as f:
                json.dump({"version": _VERSION, "entries": entries}, f)
        except OSError:  # a cache: the headers were read, the run goes on without remembering them
            pass
    return infos
