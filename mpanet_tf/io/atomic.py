"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file the project writes in place (run folder JSON, checkpoints, ``model.keras``, feature
files, manifests, downloads, ANN indexes) goes through this module:

1. the content goes to a temporary file in the target's own folder (same file system, so the
   rename cannot turn into a copy), named ``.tmp-<pid>-<random>-<name>`` so it keeps the
   target's suffixes (Keras insists on ``.keras`` / ``.weights.h5``);
2. the temporary file is flushed and fsynced;
3. ``os.replace`` puts it at the target (atomic on POSIX and Windows);
4. the folder is fsynced, so the rename survives a power cut.

An exception (or Ctrl-C) at any point removes the temporary file and leaves the target as it was.
A process killed by ``kill -9`` can leave a temporary file behind; :func:`is_temporary` names
them for the clean-ups that own their folder (:meth:`CheckpointManager.prune`).

Two forms: :func:`atomic_open` yields an open stream (``json``, ``csv``, ``np.savez``, a
download), :func:`atomic_path` yields a temporary path for writers that open the file themselves
(``model.save``, ``model.save_weights``, ``faiss.write_index``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

#: Every temporary file of this module starts with this prefix.
TEMP_PREFIX = ".tmp-"


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file :func:`atomic_path` writes (or an older release wrote:
    ``.<name>.<random>.tmp``)."""
    return name.startswith(TEMP_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))


def temporary_path(path) -> Path:
    """A fresh temporary name beside ``path``, keeping its whole name (and so its suffixes)."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")


def fsync_file(path) -> None:
    """Flush ``path``'s data to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder) -> None:
    """Flush ``folder``'s entries (a rename in it) to the disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path`` for a writer that creates the file itself; when the
    block ends normally, fsync it and rename it to ``path``.

    Any exception in the block (or in the rename) removes the temporary file and leaves an existing
    ``path`` untouched. The parent folder is created when missing.

    Example::

        with atomic_path(run / "model.keras") as temp:
            model.save(temp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(path)
    try:
        yield temp
        fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", encoding: str | None = None, newline: str | None = None):
    """Yield an open stream (``mode`` ``"wb"`` or ``"w"``) whose content replaces ``path`` when the
    block ends normally (closed, fsynced, renamed); see :func:`atomic_path` for what an exception
    does."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a whole file: mode must be 'wb' or 'w', not {mode!r}")
    with atomic_path(path) as temp:
        with open(temp, mode.replace("w", "x"), encoding=encoding, newline=newline) as stream:
            yield stream


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as stream:
        stream.write(data)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8, ``\\n`` line ends)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    """JSON-dump ``obj`` to ``path`` atomically (sorted keys, 2-space indent, final newline)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_model(model, path) -> None:
    """``model.save`` to ``path`` atomically: a failure (or Ctrl-C) part-way leaves neither a new
    ``path`` nor the temporary file."""
    with atomic_path(path) as temp:
        model.save(str(temp))
