"""The service's one adapter to the gallery store: the agreed ``GalleryStore`` interface
(``add`` / ``search`` / ``entry`` / ``count`` / ``check_model``) over today's ``.mpidx`` folder.

Stand-in for ``mpanet_tf.index.store.open_store`` (written in parallel): the names
(:class:`SearchFilter`, :class:`Hit`, :func:`open_store`) are the agreed ones, so the service
switches to the shared store by changing one import.

- Search: exact (:func:`mpanet_tf.index.exact.exact_search` over the memory-mapped rows, the
  ranking of ``search --index``) or ANN (:func:`mpanet_tf.index.ann.ann_search`); a filter selects
  the candidate rows first (in entry-id order, so ties still go to the smaller entry id).
- Add: under the index's writer lock (:func:`mpanet_tf.index.lock.write_lock`), through the
  builder's appender: rows and entries appended and fsync'ed, then ``meta.json`` atomically
  replaced. ``meta.json`` says ``pending: serve add`` while rows are appended, so a ``kill -9``
  part-way leaves an index the next writer (a restarted service) cleans: the bytes past the
  committed sizes are cut off, every acknowledged add stays.

Entries are ``{"path", "person_id", "camera", "modality", "time"}`` (``time``: ISO 8601 UTC
capture time or None). Not thread-safe: the service calls it from its one worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mpanet_tf.index.ann import ann_search, prepare_ann
from mpanet_tf.index.builder import _Appender
from mpanet_tf.index.exact import exact_search
from mpanet_tf.index.format import ENTRY_KEYS, GalleryIndex, GalleryIndexError, read_meta
from mpanet_tf.index.lock import write_lock

#: What ``meta.json`` names as the unfinished command while the service appends.
PENDING = {"command": "serve add"}


@dataclass(frozen=True)
class SearchFilter:
    """Conditions on gallery entries; every field optional (None = no condition).

    Attributes:
        cameras: camera labels as strings (``"4"``, ``"gate"``).
        modalities: ``"visible"`` / ``"infrared"``.
        since, until: capture time bounds, inclusive (timezone-aware; naive = UTC).
    """

    cameras: tuple[str, ...] | None = None
    modalities: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: dict) -> bool:
        if self.cameras is not None and str(entry.get("camera")) not in self.cameras:
            return False
        if self.modalities is not None and entry.get("modality") not in self.modalities:
            return False
        if self.since is not None or self.until is not None:
            moment = parse_time(entry.get("time"))
            if moment is None or (self.since and moment < _utc(self.since)) or (self.until and moment > _utc(self.until)):
                return False
        return True


@dataclass(frozen=True)
class Hit:
    """One ranked gallery entry.

    Attributes:
        rank: 1-based.
        entry_id: the row number in the store; stable, never reused.
        distance: Euclidean distance between L2-normalised embeddings, in [0, 2].
        entry: ``{"path", "person_id", "camera", "modality", "time"}`` (None when unknown).
    """

    rank: int
    entry_id: int
    distance: float
    entry: dict


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_time(text) -> datetime | None:
    """An ISO 8601 time (naive = UTC) or None; ValueError for anything else."""
    if text is None or text == "":
        return None
    return _utc(datetime.fromisoformat(str(text).replace("Z", "+00:00")))


def _full(entry: dict) -> dict:
    return {key: entry.get(key) for key in (*ENTRY_KEYS, "time")}


class MpidxStore:
    """The ``GalleryStore`` interface over a ``gallery.mpidx`` folder (module docstring)."""

    def __init__(self, location, writable: bool = False):
        self.location = str(location)
        self.writable = writable
        path = Path(location).expanduser()
        if writable:
            with write_lock(path):
                index = GalleryIndex.open(path, allow_pending=True)
                if index.meta.get("pending") not in (None, PENDING):
                    GalleryIndex.open(path)  # an unfinished `index build`: its own one-line refusal
                if index.meta.get("pending"):  # a service killed while adding: cut its partial rows
                    _Appender(index).write_meta(pending=None)
                    index = GalleryIndex.open(path)
        else:
            index = GalleryIndex.open(path)
        self._index = index
        self._ann = None

    # -------------------------------------------------------------- properties
    @property
    def path(self) -> Path:
        return self._index.path

    @property
    def fingerprint(self) -> str:
        return self._index.fingerprint

    @property
    def dim(self) -> int | None:
        return self._index.dim

    @property
    def dtype(self) -> str:
        return self._index.dtype

    @property
    def image_size(self) -> tuple[int, int] | None:
        size = self._index.meta.get("embedding", {}).get("image_size")
        return tuple(size) if size else None

    @property
    def roots(self) -> list[Path]:
        """The folders the index's images were taken from (its ``sources``)."""
        roots = []
        for source in self._index.meta.get("sources", []):
            folder = source.get("path") if source.get("kind") == "folder" else source.get("root")
            if folder:
                roots.append(Path(folder))
        return roots

    def count(self) -> int:
        return self._index.count

    def check_model(self, fingerprint: str, model_name) -> None:
        self._index.check_model(fingerprint, model_name)

    def entry(self, entry_id: int) -> dict | None:
        if not 0 <= int(entry_id) < self._index.count:
            return None
        return _full(self._index.entries[int(entry_id)])

    def entries(self) -> list[dict]:
        """Every entry, in entry-id order."""
        return [_full(entry) for entry in self._index.entries]

    # ------------------------------------------------------------------ adding
    def add(self, rows: np.ndarray, entries: list[dict]) -> list[int]:
        """Append ``rows`` (n, dim) L2-normalised and their entries; durable when it returns.

        Returns:
            the new entry ids.
        """
        if not self.writable:
            raise GalleryIndexError(f"gallery index {self.location} was opened read-only")
        rows = np.asarray(rows).reshape(len(entries), -1)
        with write_lock(self.path):
            if read_meta(self.path) != self._index.meta:  # another process (`index add`) wrote it
                self._index = GalleryIndex.open(self.path)
            appender = _Appender(self._index)
            appender.write_meta(pending=PENDING)
            appender.meta["pending"] = None  # committed with the new count by append()
            first = self._index.count
            full = [_full(entry) for entry in entries]
            appender.append(rows, full, [])
        self._index.meta = appender.meta
        self._index.entries.extend(full)
        return list(range(first, first + len(full)))

    # --------------------------------------------------------------- searching
    def search(self, queries: np.ndarray, top_k: int = 10, filters: SearchFilter | None = None,
               ann: bool = False, nprobe: int | None = None) -> list[list[Hit]]:
        """The ``top_k`` nearest entries of each query (q, dim), ties to the smaller entry id."""
        queries = np.asarray(queries).reshape(-1, self.dim or np.asarray(queries).shape[-1])
        total = self._index.count
        if total == 0:
            return [[] for _ in queries]
        rows = self._index.embeddings()
        selected = None
        if filters is not None and filters != SearchFilter():
            selected = np.array([i for i, e in enumerate(self._index.entries) if filters.matches(e)], np.int64)
            if len(selected) == 0:
                return [[] for _ in queries]
        if ann:
            order, distances = self._ann_search(queries, top_k, nprobe, selected)
        elif selected is None:
            order, distances = exact_search(queries, rows, top_k=top_k)
        else:
            order, distances = exact_search(queries, rows[selected], top_k=top_k)
            order = selected[order]
        return [[Hit(rank, int(i), float(d), self.entry(int(i))) for rank, (i, d) in enumerate(
            ((i, d) for i, d in zip(found, dist) if i >= 0), start=1)] for found, dist in zip(order, distances)]

    def _ann_search(self, queries, top_k, nprobe, selected):
        if self._ann is None or self._ann[1]["rows"] != self._index.count:
            self._ann = prepare_ann(self._index)
        if selected is None:
            return ann_search(self._index, queries, top_k, nprobe=nprobe, prepared=self._ann)
        # filtered: rank more ANN candidates, keep the selected ones
        wide, dist = ann_search(self._index, queries, min(self._index.count, 8 * top_k), nprobe=nprobe,
                                prepared=self._ann)
        keep = np.isin(wide, selected)
        order = np.full((len(wide), top_k), -1, np.int64)
        distances = np.full((len(wide), top_k), np.inf, np.float32)
        for q in range(len(wide)):
            found = wide[q][keep[q]][:top_k]
            order[q, :len(found)], distances[q, :len(found)] = found, dist[q][keep[q]][:top_k]
        return order, distances

    def close(self) -> None:
        self._ann = None


def open_store(location, writable: bool = False) -> MpidxStore:
    """The store at ``location`` (a ``.mpidx`` folder)."""
    return MpidxStore(location, writable=writable)
