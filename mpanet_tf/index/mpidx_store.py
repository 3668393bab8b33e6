"""The ``.mpidx`` folder as a :class:`~mpanet_tf.index.store_interface.GalleryStore`: the embedded
default (memory-mapped exact search, optional FAISS ANN; :mod:`mpanet_tf.index.format`).

Filters are a pre-filter: the entries' camera, modality and capture time are read once into
arrays, the matching row numbers selected, and only those rows ranked (read chunk by chunk from
the memory map, as the unfiltered search), by the exact search or, with ``ann``, by FAISS
restricted to them (an ID selector) and the same exact re-ranking.
"""

from __future__ import annotations

import os

import numpy as np

from mpanet_tf.index.ann import ann_search
from mpanet_tf.index.builder import appender_for
from mpanet_tf.index.exact import exact_search
from mpanet_tf.index.format import GalleryIndex
from mpanet_tf.index.store_interface import GalleryStore, SearchFilter, entry_columns, full_entry, hits_from


class Selection:
    """Rows ``picked`` (sorted row numbers) of ``rows``, sliceable like an array without loading them all.

    ``selection[a:b]`` reads rows ``picked[a:b]``; ``shape`` is (len(picked), dim).
    """

    def __init__(self, rows, picked: np.ndarray):
        self.rows, self.picked = rows, picked
        self.shape = (len(picked), int(rows.shape[1]))

    def __getitem__(self, key):
        return self.rows[self.picked[key]]


class MpidxStore(GalleryStore):
    """An opened ``.mpidx`` folder (read-only unless ``writable``)."""

    def __init__(self, location, writable: bool = False):
        self.location = os.fspath(location)
        self.writable = writable
        self._open(allow_pending=writable)

    def _open(self, allow_pending: bool) -> None:
        self.index = GalleryIndex.open(self.location, allow_pending=allow_pending)
        meta = self.index.meta
        self.fingerprint, self.dim, self.dtype = self.index.fingerprint, self.index.dim, self.index.dtype
        size = meta.get("embedding", {}).get("image_size")
        self.image_size = tuple(size) if size else None
        self._columns = None

    def count(self) -> int:
        return self.index.count

    def check_model(self, fingerprint: str, model_name) -> None:
        self.index.check_model(fingerprint, model_name)

    def add(self, rows: np.ndarray, entries: list[dict]) -> list[int]:
        if not self.writable:
            raise ValueError(f"{self.location} was opened read-only; open_store(..., writable=True) to add")
        if len(rows) != len(entries):
            raise ValueError(f"{len(rows)} rows need as many entries, got {len(entries)}")
        first = self.index.count
        with appender_for(self.index.path) as appender:
            appender.append(np.asarray(rows), [full_entry(e) for e in entries], [])
        self._open(allow_pending=True)
        return list(range(first, first + len(entries)))

    def _selected(self, filters: SearchFilter | None) -> np.ndarray | None:
        """Sorted row numbers matching ``filters``; None when there is no condition."""
        if filters is None or filters.empty:
            return None
        if self._columns is None:
            self._columns = entry_columns(self.index.entries)
        return np.flatnonzero(filters.mask(*self._columns)).astype(np.int64)

    def search(self, queries: np.ndarray, top_k: int = 10, filters: SearchFilter | None = None,
               ann: bool = False, nprobe: int | None = None) -> list:
        queries = np.asarray(queries).reshape(-1, np.shape(queries)[-1])
        selected = self._selected(filters)
        total = self.count() if selected is None else len(selected)
        if total == 0:
            return [[] for _ in queries]
        if ann:
            order, distances = ann_search(self.index, queries, top_k, nprobe=nprobe, selected=selected)
        elif selected is None:
            order, distances = exact_search(queries, self.index.embeddings(), top_k=top_k,
                                            source=f"gallery index {self.index.path}")
        else:
            order, distances = exact_search(queries, Selection(self.index.embeddings(), selected), top_k=top_k,
                                            source=f"gallery index {self.index.path}")
            order = np.where(order >= 0, selected[np.maximum(order, 0)], -1)
        return hits_from(order, distances, self.entry)

    def entry(self, entry_id: int) -> dict | None:
        if not 0 <= int(entry_id) < self.index.count:
            return None
        return full_entry(self.index.entries[int(entry_id)])

    def entries(self) -> list[dict]:
        return [full_entry(e) for e in self.index.entries]

    def sources(self) -> list[dict]:
        return list(self.index.meta.get("sources", []))

    def rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.index.embeddings()[start:stop], dtype=np.float32)

    def close(self) -> None:
        self.index = None
