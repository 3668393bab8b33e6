"""Where a gallery index lives: :func:`open_store` turns the location the user passes into a
:class:`GalleryStore` (interface: :mod:`mpanet_tf.index.store_interface`).

- a path: the ``.mpidx`` folder (:class:`~mpanet_tf.index.mpidx_store.MpidxStore`), the embedded default;
- ``milvus:PATH.db`` (Milvus Lite) or ``milvus://HOST:PORT/COLLECTION`` (a Milvus server; token
  from ``$MPANET_MILVUS_TOKEN``): :class:`~mpanet_tf.index.milvus_store.MilvusStore`.
"""

from __future__ import annotations

import os

from mpanet_tf.index.milvus_store import MilvusStore, is_milvus_location
from mpanet_tf.index.mpidx_store import MpidxStore
from mpanet_tf.index.store_interface import ENTRY_FIELDS, GalleryStore, Hit, SearchFilter

__all__ = ["ENTRY_FIELDS", "GalleryStore", "Hit", "SearchFilter", "is_milvus_location", "open_store"]


def open_store(location, writable: bool = False) -> GalleryStore:
    """The gallery store at ``location`` (a path -> ``.mpidx``; ``milvus:...`` -> Milvus), checked.

    ``writable`` allows :meth:`GalleryStore.add` (and opening an unfinished build).

    Raises:
        GalleryIndexError: missing, corrupt, foreign or unfinished (one line); a ``milvus:``
            location without the ``[milvus]`` extra installed says so.
    """
    if is_milvus_location(location):
        return MilvusStore.open(location, writable=writable, allow_pending=writable)
    return MpidxStore(os.path.expanduser(os.fspath(location)), writable=writable)
