"""The gallery-store interface: what every place a gallery index can live offers.

A gallery store holds L2-normalised embeddings with one entry per row
``{"path", "person_id", "camera", "modality", "time"}`` (null when unknown) and the fingerprint of
the model that made them. Its rows are numbered 0, 1, 2, ... in the order they were added (the
entry id: stable, never reused). :meth:`GalleryStore.search` ranks them by the Euclidean distance
between L2-normalised embeddings (``||q - g||_2`` in [0, 2], the distance of ``mpanet-tf search``),
equal distances broken by the smaller entry id, optionally among the entries a
:class:`SearchFilter` selects. The implementations are :mod:`mpanet_tf.index.mpidx_store` (the
``.mpidx`` folder) and :mod:`mpanet_tf.index.milvus_store` (Milvus); :func:`mpanet_tf.index.store.open_store`
picks one from the location the user passes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from mpanet_tf.data.capture_time import UNKNOWN_US, as_utc, epoch_us, parse_time
from mpanet_tf.errors import ConfigError

#: The keys of every entry.
ENTRY_FIELDS = ("path", "person_id", "camera", "modality", "time")
MODALITIES = ("visible", "infrared")


@dataclass(frozen=True)
class SearchFilter:
    """Which entries a search may return; every field optional (None = no condition).

    An entry matches when its camera label (``str(entry["camera"])``) is one of ``cameras``, its
    modality one of ``modalities``, and its capture time lies in [``since``, ``until``] (both
    inclusive, compared in whole microseconds). An entry whose field is unknown (null) matches no
    condition on that field.

    Attributes:
        cameras: camera labels as strings (``"4"``, ``"gate"``).
        modalities: ``"visible"`` / ``"infrared"``.
        since, until: capture-time bounds (timezone-aware; a naive datetime is UTC).
    """

    cameras: tuple[str, ...] | None = None
    modalities: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self):
        if self.cameras is not None:
            object.__setattr__(self, "cameras", tuple(str(c) for c in self.cameras))
        if self.modalities is not None:
            modalities = tuple(str(m).lower() for m in self.modalities)
            unknown = [m for m in modalities if m not in MODALITIES]
            if unknown:
                raise ConfigError(f"unknown --modality {unknown[0]!r}; use visible, infrared or both (comma-separated)")
            object.__setattr__(self, "modalities", modalities)
        for name in ("since", "until"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_utc(getattr(self, name)))
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ConfigError(f"--since {self.since.isoformat()} is after --until {self.until.isoformat()}; "
                              "swap them")

    @classmethod
    def from_text(cls, cameras: str | None = None, modalities: str | None = None, since: str | None = None,
                  until: str | None = None) -> "SearchFilter":
        """The filter of ``search --camera 4,5 --modality infrared --since T --until T`` (comma-separated
        lists; ISO 8601 times, UTC unless an offset is given); :class:`ConfigError` names a bad value."""
        def listed(text, option):
            if text is None:
                return None
            values = tuple(v.strip() for v in str(text).split(",") if v.strip())
            if not values:
                raise ConfigError(f"{option} {text!r} names nothing; pass comma-separated values, e.g. 4,5")
            return values

        return cls(listed(cameras, "--camera"), listed(modalities, "--modality"),
                   None if since is None else parse_time(since, "--since"),
                   None if until is None else parse_time(until, "--until"))

    @property
    def empty(self) -> bool:
        """True when the filter has no condition (every entry matches)."""
        return self.cameras is None and self.modalities is None and self.since is None and self.until is None

    def time_bounds_us(self) -> tuple[int | None, int | None]:
        """(since, until) in microseconds since the epoch, None where unbounded."""
        return (None if self.since is None else epoch_us(self.since),
                None if self.until is None else epoch_us(self.until))

    def mask(self, cameras: np.ndarray, modalities: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        """(N,) bool: which of N entries match, given their camera labels and modalities ((N,)
        object arrays of str or None) and capture times ((N,) int64 microseconds, unknown =
        :data:`~mpanet_tf.data.capture_time.UNKNOWN_US`)."""
        keep = np.ones(len(times_us), bool)
        if self.cameras is not None:
            keep &= np.isin(cameras, np.array(self.cameras, dtype=object))
        if self.modalities is not None:
            keep &= np.isin(modalities, np.array(self.modalities, dtype=object))
        since, until = self.time_bounds_us()
        if since is not None or until is not None:
            keep &= times_us != UNKNOWN_US
        if since is not None:
            keep &= times_us >= since
        if until is not None:
            keep &= times_us <= until
        return keep


def entry_columns(entries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(camera labels, modalities, capture times in µs) of ``entries``, as :meth:`SearchFilter.mask` takes them."""
    cameras = np.array([None if e.get("camera") is None else str(e["camera"]) for e in entries] or [], dtype=object)
    modalities = np.array([e.get("modality") for e in entries] or [], dtype=object)
    times = np.array([epoch_us(e.get("time")) for e in entries], dtype=np.int64)
    return cameras, modalities, times


def full_entry(entry: dict) -> dict:
    """``entry`` with exactly the keys of :data:`ENTRY_FIELDS` (missing ones null)."""
    return {key: entry.get(key) for key in ENTRY_FIELDS}


@dataclass(frozen=True)
class Hit:
    """One match of a search.

    Attributes:
        rank: 1-based.
        entry_id: the row number in the store (stable, never reused).
        distance: Euclidean distance between the L2-normalised embeddings.
        entry: ``{"path", "person_id", "camera", "modality", "time"}`` (None when unknown).
    """

    rank: int
    entry_id: int
    distance: float
    entry: dict


class GalleryStore(abc.ABC):
    """A gallery index wherever it lives (see the module docstring).

    Attributes:
        location: what the user passed (a path, ``milvus:PATH.db``, ``milvus://HOST:PORT/COLLECTION``).
        fingerprint: the model fingerprint (:mod:`mpanet_tf.index.fingerprint`).
        dim: embedding dimension (None while the store is empty).
        dtype: ``"float32"`` or ``"float16"``: the precision the rows are kept at.
        image_size: (height, width) the model embeds at, None when the model resizes itself.
    """

    location: str
    fingerprint: str
    dim: int | None
    dtype: str
    image_size: tuple[int, int] | None

    @abc.abstractmethod
    def count(self) -> int:
        """Rows in the store."""

    @abc.abstractmethod
    def check_model(self, fingerprint: str, model_name) -> None:
        """Refuse (one-line :class:`~mpanet_tf.index.format.GalleryIndexError`) another model's fingerprint."""

    @abc.abstractmethod
    def add(self, rows: np.ndarray, entries: list[dict]) -> list[int]:
        """Append (n, dim) L2-normalised embeddings (stored as they are, at :attr:`dtype`) and their
        entries; durable (fsync / flush) before it returns. Returns the new entry ids."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, top_k: int = 10, filters: SearchFilter | None = None,
               ann: bool = False, nprobe: int | None = None) -> list[list[Hit]]:
        """The ``top_k`` nearest matching entries of each of the (q, dim) queries (L2-normalised
        here), nearest first, ties broken by the smaller entry id; exact unless ``ann``."""

    @abc.abstractmethod
    def entry(self, entry_id: int) -> dict | None:
        """The entry of ``entry_id`` (all :data:`ENTRY_FIELDS`), None for an unknown id."""

    @abc.abstractmethod
    def entries(self) -> list[dict]:
        """Every entry, in entry-id order."""

    @abc.abstractmethod
    def sources(self) -> list[dict]:
        """What the store was built from (``index build``/``add`` sources: a folder, a dataset split)."""

    @abc.abstractmethod
    def rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, dim) stored embeddings of entry ids start..stop-1, float32."""

    def close(self) -> None:
        """Release the connection or files (the store is unusable afterwards)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def hits_from(order: np.ndarray, distances: np.ndarray, entries_of) -> list[list[Hit]]:
    """Hits of (Q, k) entry ids (-1 = none) and distances; ``entries_of(id)`` gives an entry."""
    return [[Hit(rank, int(i), float(d), entries_of(int(i)))
             for rank, (i, d) in enumerate(((i, d) for i, d in zip(ids, dists) if i >= 0), start=1)]
            for ids, dists in zip(order, distances)]
