"""Paths read from a data file (a manifest row, a list file line) stay inside their root.

Every reader of a file that names images by path (the manifest's ``path`` column, LLCM's
``idx/train_*.txt``, RegDB's ``idx/*.txt``, any future list) passes each path through
:func:`contained_relpath` before it opens anything. The path must be relative to the root (the
manifest's folder, the dataset folder); it is refused, with one :class:`DatasetError` line naming
``file:line``, when it is

- absolute (``/etc/passwd``, ``\\\\server\\share\\x``), or starts with a drive letter (``C:x``, ``c:\\x``);
- climbing out of the root once its ``..`` segments are resolved (``../x``, ``a/../../x``);
- empty after normalisation (``.``, ``a/..``), or holding a NUL byte.

``a/../b.jpg`` is accepted as ``b.jpg``; ``\\`` counts as a separator, as on Windows.

Symbolic links: the check is on the *text* of the path, not on the file system. A link inside the
root that points outside it (``datasets/SYSU-MM01`` linked to a disk elsewhere, ``cam1/`` linked to
another drive) is followed, as users link dataset folders to where the data lives: the person who
put the link in the root chose that target. What a search service may hand out is decided by the
gallery index it serves, not here.
"""

from __future__ import annotations

import posixpath
import re

from mpanet_tf.errors import DatasetError

_DRIVE = re.compile(r"^[A-Za-z]:")


def contained_relpath(text: str, where: str, root=None) -> str:
    """``text`` as a normalised '/'-separated path relative to its root, or a :class:`DatasetError`.

    Args:
        text: the path as written in the file ('/' or '\\\\' separators).
        where: ``"<file>:<line>"`` for the message.
        root: the root's name for the message (default: "its folder").

    Returns:
        the normalised relative path (no ``.``/``..`` segments, no leading or doubled '/').
    """
    inside = f"relative to {root}" if root is not None else "relative to the file's root folder"
    value = str(text).replace("\\", "/")
    shown = str(text)[:80]
    if "\x00" in value:
        raise DatasetError(f"{where} has a path with a NUL byte {shown!r}; write the image path {inside}")
    if value.startswith("/") or _DRIVE.match(value):
        raise DatasetError(f"{where} has an absolute path {shown!r}; write the image path {inside}")
    normal = posixpath.normpath(value)
    if normal == ".." or normal.startswith("../"):
        raise DatasetError(f"{where} has a path {shown!r} that leaves its root with '..'; write the image path "
                           f"{inside}, inside it (link a folder into the root to use images kept elsewhere)")
    if normal in (".", ""):
        raise DatasetError(f"{where} has a path {shown!r} that names no file; write the image path {inside}")
    return normal
