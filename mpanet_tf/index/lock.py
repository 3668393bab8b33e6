"""The writer lock of a gallery index: one process writes an index at a time.

An exclusive, non-blocking ``flock`` on the index's ``lock`` file (:data:`~mpanet_tf.index.format.LOCK_FILE`),
held by building, adding and by ``search --ann`` while it trains or extends ``ann.faiss``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from mpanet_tf.index.format import LOCK_FILE, GalleryIndexError


@contextmanager
def write_lock(folder: Path):
    """Hold the index's exclusive writer lock; refuse (one line) when another process holds it."""
    import fcntl

    with open(Path(folder) / LOCK_FILE, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GalleryIndexError(f"gallery index {folder} is being written by another mpanet-tf process; "
                                    "wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
