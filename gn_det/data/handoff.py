"""Validated COCO jsons handed from the launching process to the training processes.

With several processes, ``tools/train_net.py`` validates the datasets in the launching process,
then Detectron2's ``launch`` starts the training processes, and each of them used to parse the
json again (as Detectron2's own do): 3.3 s per process for a quarter of train2017, ~14 s at full
size. The launcher has the parsed json in hand after validation; it writes it once as a pickle
(0.6 s for a quarter of train2017) and every training process on the machine loads that (0.8 s)
instead of parsing the text. Only plain json data can come out of these files (the unpickler
refuses every class and function), and a file is used only while the json it was parsed from is
unchanged (same size and modification time); otherwise the process reads the json as before.

The files live in ``OUTPUT_DIR/validated_datasets/handoff-<host>-<pid>/``: the last process of
the machine to load a file removes it, and the launcher removes the folder when ``launch``
returns (``handed_over``).
"""

import contextlib
import glob
import logging
import os
import pickle
import shutil
import socket
from typing import Dict, Iterator, Optional

__all__ = ["write_handoff", "read_handoff", "handed_over"]

logger = logging.getLogger(__name__)


class _JsonDataOnly(pickle.Unpickler):
    """Loads dicts, lists, strings, numbers, booleans and None; refuses anything that would
    import or call code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a hand-off file holds json data only, not {module}.{name}")


def write_handoff(parsed: Dict[str, dict], directory: str, readers: int) -> Dict[str, dict]:
    """Pickle each parsed json (by absolute json path) into ``directory``; return the entries the
    training processes need (``read_handoff``): the pickle's path, the json's size and mtime, and
    how many processes will read it."""
    os.makedirs(directory, exist_ok=True)
    entries = {}
    for i, (json_file, data) in enumerate(parsed.items()):
        stat = os.stat(json_file)
        path = os.path.join(directory, f"{i}_{os.path.basename(json_file)}.pickle")
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        entries[json_file] = {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "readers": readers}
    return entries


def read_handoff(json_file: str, entry: dict, reader: int) -> Optional[dict]:
    """``json_file``'s parsed content from its hand-off file, or None (read the json itself) when
    the json changed since it was validated or the file is gone or damaged. ``reader`` (the local
    rank) marks the file read; the last of ``entry["readers"]`` readers removes it."""
    try:
        stat = os.stat(json_file)
        if (stat.st_size, stat.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
            logger.info(f"{json_file} changed since it was validated: reading it again")
            return None
        with open(entry["path"], "rb") as f:
            data = _JsonDataOnly(f).load()
    except (OSError, EOFError, pickle.UnpicklingError) as error:
        logger.info(f"hand-off of {json_file} not usable ({error}): reading the json")
        return None
    _mark_read(entry["path"], reader, entry["readers"])
    logger.info(f"{json_file}: loaded as the launching process validated it, from {entry['path']}")
    return data


def _mark_read(path: str, reader: int, readers: int) -> None:
    with contextlib.suppress(OSError):
        open(f"{path}.read{reader}", "w").close()
        done = glob.glob(glob.escape(path) + ".read*")
        if len(done) >= readers:
            for name in [path] + done:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)


@contextlib.contextmanager
def handed_over(parsed: Dict[str, dict], output_dir: str, readers: int) -> Iterator[Dict[str, dict]]:
    """Write ``parsed`` for the ``readers`` training processes of this machine under
    ``output_dir`` (see the module docstring) and empty it (the launcher does not need it any
    more); yield the entries, to pass to the processes; remove the files afterwards. Where they
    cannot be written, yields no entries: the processes read the jsons themselves."""
    directory = os.path.join(output_dir, f"handoff-{socket.gethostname()}-{os.getpid()}")
    try:
        try:
            entries = write_handoff(parsed, directory, readers) if parsed else {}
        except OSError as error:
            logger.warning(f"could not hand the validated datasets over in {directory} ({error}); "
                           "each training process reads them itself")
            entries = {}
        parsed.clear()
        yield entries
    finally:
        shutil.rmtree(directory, ignore_errors=True)
