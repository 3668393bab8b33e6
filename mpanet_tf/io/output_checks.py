"""Checks, before any work, that a command's output file or folder can be written.

A command that would train for an hour and then fail to write its result checks its ``--output``
first (:func:`check_output_file`, :func:`check_output_folder`): one line naming the option and
the fix, exit code 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mpanet_tf.errors import ConfigError


def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Create and remove one temporary file in ``folder``: the only test that also catches
    read-only file systems and pseudo file systems such as /proc (``os.access`` does not)."""
    if not folder.is_dir():
        raise ConfigError(f"{option} {target}: {folder} is not a folder; choose another {option}")
    try:
        handle, temp = tempfile.mkstemp(prefix=".mpanet-write-test-", dir=folder)
        os.close(handle)
        os.unlink(temp)
    except OSError as error:
        raise ConfigError(f"{option} {target} cannot be written ({error.strerror or error} in {folder}); "
                          f"choose a writable {option}") from None


def check_output_file(path, option: str = "--output") -> Path:
    """Check, before any work, that the file ``path`` can be written (atomically, next to itself).

    Raises:
        ConfigError: ``path`` is a folder, a folder on the way is a file, or nothing can be
            written there (permissions, read-only or pseudo file system).
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; pass a file name")
    existing = _nearest_existing(path.parent)
    _probe_writable(existing, option, path)
    return path


def check_output_folder(path, option: str = "--output") -> Path:
    """Check, before any work, that the folder ``path`` exists or can be created and written.

    Raises:
        ConfigError: ``path`` is a file, or nothing can be written where it would be.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; pass a folder")
    _probe_writable(_nearest_existing(path), option, path)
    return path
