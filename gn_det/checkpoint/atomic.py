"""Atomic file writes for checkpoints.

A checkpoint is first written to a hidden temporary file in the same directory, flushed, fsynced,
and only then renamed over its final name (``os.replace`` is atomic on POSIX within a file system).
A crash or SIGKILL at any moment therefore leaves either the previous complete file or the new
complete file under the final name, never a truncated one; at worst a stale ``*.partial`` file
remains, which the next checkpointer removes (and logs).
"""

import logging
import os
import re
import tempfile
from typing import Any, List

__all__ = [
    "AtomicFileWriter",
    "AtomicWritePathManager",
    "remove_stale_partial_files",
    "PARTIAL_SUFFIX",
]

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
# ".<final name>.<random>.partial", as made by tempfile.mkstemp below.
_PARTIAL_RE = re.compile(r"^\.(?P<final>.+)\.[A-Za-z0-9_]+" + re.escape(PARTIAL_SUFFIX) + r"$")


def _default_file_mode() -> int:
    # mkstemp creates files with mode 0600; a plain open() would give 0666 minus the umask.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; some file systems do not support fsync on directories.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFileWriter:
    """A writable file object whose content appears under ``path`` only when closed cleanly.

    Used as a context manager, an exception inside the block discards the temporary file and the
    final path keeps its previous content. ``close()`` outside a ``with`` block commits.
    Any other file method (``tell``, ``fileno``, ...) is the temporary file's own.
    """

    def __init__(self, path: str, mode: str = "wb"):
        if "w" not in mode or "+" in mode:
            raise ValueError(
                f"AtomicFileWriter supports write-only modes ('w', 'wb'), got {mode!r}"
            )
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        fd, self.temp_path = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", suffix=PARTIAL_SUFFIX, dir=self.directory
        )
        self._file = os.fdopen(fd, mode)
        self._finished = False

    def write(self, data) -> int:
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        if name == "_file":  # not set yet: __init__ failed before opening
            raise AttributeError(name)
        return getattr(self._file, name)

    def commit(self) -> None:
        """Flush, fsync, and rename the temporary file over ``path``."""
        if self._finished:
            return
        self._finished = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        os.chmod(self.temp_path, _FILE_MODE)
        os.replace(self.temp_path, self.path)
        _fsync_directory(self.directory)

    def discard(self) -> None:
        """Drop what was written; ``path`` keeps its previous content (or stays absent)."""
        if self._finished:
            return
        self._finished = True
        self._file.close()
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self.commit()

    @property
    def closed(self) -> bool:
        return self._finished

    def __enter__(self) -> "AtomicFileWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _is_local_path(path: str) -> bool:
    return "://" not in str(path)


class AtomicWritePathManager:
    """Wraps an iopath ``PathManager`` so that ``open(path, "w"/"wb")`` of a local path is atomic.

    Everything else (reads, remote paths, ``exists``, ``rm``, ``get_local_path``, ...) goes to the
    wrapped manager unchanged. fvcore's ``Checkpointer.save`` and ``tag_last_checkpoint`` write
    through ``self.path_manager.open``, so this makes both ``model_*.pth`` and ``last_checkpoint``
    atomic without changing how they are written.
    """

    def __init__(self, base):
        self._base = base

    @property
    def base(self):
        return self._base

    def open(self, path: str, mode: str = "r", *args, **kwargs):
        if mode in ("w", "wb") and _is_local_path(path):
            return AtomicFileWriter(path, mode)
        return self._base.open(path, mode, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


def remove_stale_partial_files(directory: str) -> List[str]:
    """Delete ``.*.partial`` files left in ``directory`` by a process killed mid-save.

    Returns the removed paths (each is also logged as a warning, since it means a save was lost).
    """
    removed = []
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in sorted(names):
        match = _PARTIAL_RE.match(name)
        if not match:
            continue
        path = os.path.join(directory, name)
        try:
            os.unlink(path)
        except OSError as e:
            logger.warning(f"Could not remove the partial checkpoint {path}: {e}")
            continue
        removed.append(path)
        logger.warning(
            f"Removed {path}: an interrupted save of {match.group('final')} (the process was "
            "stopped while writing it; the previous complete checkpoint is unaffected)."
        )
    return removed
