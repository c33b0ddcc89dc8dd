"""Loading checkpoint files without running code from them.

- ``.pth`` / ``.pt`` / ``.pyth``: ``torch.load(weights_only=True)`` (tensors, containers, numbers,
  strings; torch's own allowlist).
- ``.pkl`` (Detectron / Detectron2 model zoo): a restricted unpickler that allows plain containers
  and numpy arrays, dtypes and scalars, i.e. exactly the globals ``pickle`` emits for those, and
  nothing else.

Anything else is refused with :class:`UnsafeCheckpointError` naming the file and the offending
global, unless the caller explicitly trusts the file (``trust=True``: plain ``pickle`` /
``torch.load(weights_only=False)``, which can run arbitrary code).
Truncated or corrupt files raise :class:`CheckpointLoadError` with the path and the reason.
"""

import _compat_pickle
import importlib
import os
import pickle
import re
from typing import Any, Dict, Optional, Tuple

import torch

__all__ = [
    "CheckpointLoadError",
    "UnsafeCheckpointError",
    "RestrictedUnpickler",
    "PICKLE_ALLOWED_GLOBALS",
    "TRUST_ENV_VAR",
    "trust_from_env",
    "load_pickle_file",
    "load_torch_file",
]

# Set to "1" by tools' --trust-checkpoint; read in every (spawned) training process.
TRUST_ENV_VAR = "GN_DET_TRUST_CHECKPOINT"


def trust_from_env() -> bool:
    return os.environ.get(TRUST_ENV_VAR, "") == "1"


class CheckpointLoadError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not in a known layout."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"Cannot load checkpoint {path}: {reason}")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file references a global that could run code when unpickled."""

    def __init__(self, path: str, global_name: str, allowed: str):
        self.path = path
        self.global_name = global_name
        super().__init__(
            f"Refusing to load checkpoint {path}: it references {global_name!r}, which unpickling "
            f"would import and may call (code execution). Allowed here: {allowed}. If you trust "
            f"the file's source, pass --trust-checkpoint (or trust_checkpoint=True, or set "
            f"{TRUST_ENV_VAR}=1)."
        )


# The globals pickle emits for plain containers and numpy arrays/dtypes/scalars, written with any
# protocol (0-5), by Python 2 (Detectron's files: "__builtin__") or 3, and numpy 1.x
# ("numpy.core") or 2.x ("numpy._core"). Values: (module to import, attribute) of the object.
_NUMPY_CORE_ALIASES = ("numpy.core", "numpy._core")
_ALLOWED_SPECS: Dict[Tuple[str, str], Tuple[str, str]] = {
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
    ("builtins", "set"): ("builtins", "set"),
    ("__builtin__", "set"): ("builtins", "set"),
    ("builtins", "frozenset"): ("builtins", "frozenset"),
    ("__builtin__", "frozenset"): ("builtins", "frozenset"),
    # Protocol <= 2 under Python 3 encodes bytes (e.g. an array's raw data) as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}
for _alias in _NUMPY_CORE_ALIASES:
    # ndarray.__reduce__ -> _reconstruct(ndarray, shape, typecode) + __setstate__; protocol 5 ->
    # _frombuffer(buffer, dtype, shape, order); numpy scalars -> scalar(dtype, bytes).
    _ALLOWED_SPECS[(f"{_alias}.multiarray", "_reconstruct")] = ("multiarray", "_reconstruct")
    _ALLOWED_SPECS[(f"{_alias}.multiarray", "scalar")] = ("multiarray", "scalar")
    _ALLOWED_SPECS[(f"{_alias}.numeric", "_frombuffer")] = ("numeric", "_frombuffer")

PICKLE_ALLOWED_GLOBALS = tuple(f"{m}.{n}" for m, n in _ALLOWED_SPECS)
_ALLOWED_SUMMARY = (
    "dict, list, tuple, str, bytes, numbers, OrderedDict, set, numpy arrays/dtypes/scalars"
)


def _resolve(spec: Tuple[str, str]) -> Any:
    module, name = spec
    if module in ("multiarray", "numeric"):
        # Import numpy's core submodule under whichever name this numpy has, without touching the
        # deprecated numpy.core alias (numpy 2 warns on it).
        for core in ("numpy._core", "numpy.core"):
            try:
                return getattr(importlib.import_module(f"{core}.{module}"), name)
            except (ImportError, AttributeError):
                continue
        raise ImportError(f"numpy has no {module}.{name}")
    return getattr(importlib.import_module(module), name)


def _display_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 resolves it: protocol <= 2 pickles carry Python 2 names (e.g.
    ``commands.call`` for ``subprocess.call``), which pickle maps back when loading."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An ``Unpickler`` that resolves only the globals in ``PICKLE_ALLOWED_GLOBALS``.

    Plain containers and scalars are pickle opcodes and need no globals. Every other global
    (``os.system``, ``builtins.eval``, any class) raises :class:`UnsafeCheckpointError` before it
    is imported, so no code from the file runs.
    """

    def __init__(self, file, *, source: str = "<stream>", **kwargs):
        super().__init__(file, **kwargs)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        spec = _ALLOWED_SPECS.get((module, name))
        if spec is None:
            raise UnsafeCheckpointError(self._source, _display_name(module, name), _ALLOWED_SUMMARY)
        return _resolve(spec)

    def persistent_load(self, pid: Any) -> Any:
        # torch's legacy (non-zip) format stores tensors as persistent ids: not a .pkl model file.
        raise UnsafeCheckpointError(
            self._source,
            f"persistent id {str(pid)[:60]!r} (a torch.save file named .pkl?)",
            _ALLOWED_SUMMARY,
        )


def load_pickle_file(path: str, *, trust: bool = False) -> Any:
    """Unpickle ``path`` (``encoding="latin1"`` so Python 2 files with numpy arrays load).

    Raises CheckpointLoadError (missing, empty, truncated, corrupt) or UnsafeCheckpointError.
    """
    _require_nonempty_file(path)
    try:
        with open(path, "rb") as f:
            if trust:
                return pickle.load(f, encoding="latin1")
            return RestrictedUnpickler(f, source=path, encoding="latin1").load()
    except UnsafeCheckpointError:
        raise
    except EOFError:
        raise CheckpointLoadError(path, "the pickle data ends early (truncated file?)") from None
    except pickle.UnpicklingError as e:
        reason = "the pickle data ends early (truncated file)" if "truncated" in str(e) else str(e)
        raise CheckpointLoadError(path, f"corrupt pickle: {reason}") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise CheckpointLoadError(path, f"corrupt pickle ({type(e).__name__}: {e})") from None


_GLOBAL_IN_TORCH_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")


def load_torch_file(path: str, *, trust: bool = False, mmap: Optional[bool] = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=not trust)`` with clear errors.

    ``mmap=True`` maps tensor storages instead of reading them (zip-format files only).
    """
    _require_nonempty_file(path)
    kwargs = {"map_location": torch.device("cpu"), "weights_only": not trust}
    if mmap:
        kwargs["mmap"] = True
    try:
        return torch.load(path, **kwargs)
    except pickle.UnpicklingError as e:
        message = str(e)
        found = _GLOBAL_IN_TORCH_MESSAGE.search(message)
        if "Weights only load failed" in message and found:
            module, _, name = found.group(1).rpartition(".")
            raise UnsafeCheckpointError(
                path,
                _display_name(module, name),
                "tensors, containers, numbers and strings (torch.load weights_only=True)",
            ) from None
        raise CheckpointLoadError(path, _short_torch_reason(message)) from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, KeyError) as e:
        raise CheckpointLoadError(path, _short_torch_reason(f"{type(e).__name__}: {e}")) from None


def _short_torch_reason(message: str) -> str:
    lowered = message.lower()
    if "central directory" in lowered or "zip archive" in lowered:
        return f"not a complete torch zip archive (truncated or corrupt file): {message.splitlines()[0]}"
    if "crc" in lowered:
        return f"corrupt data (checksum mismatch): {message.splitlines()[0]}"
    return message.strip().splitlines()[-1] if message.strip() else "unknown error"


def _require_nonempty_file(path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointLoadError(path, "no such file")
    if not os.path.isfile(path):
        raise CheckpointLoadError(path, "not a regular file")
    if not os.access(path, os.R_OK):
        raise CheckpointLoadError(path, "not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise CheckpointLoadError(path, "the file is empty (0 bytes; an interrupted save?)")
