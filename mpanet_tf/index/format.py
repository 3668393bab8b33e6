"""The gallery index on disk (``gallery.mpidx/``), and its validation when opened.

::

    gallery.mpidx/
      meta.json        format name and version, count, dim, dtype, model fingerprint, embedding
                       settings, sources, created/updated, the committed byte sizes, and the
                       unfinished build ("pending") when there is one
      embeddings.bin   count x dim L2-normalised embeddings, raw row-major, little-endian float32
                       (or float16): numpy.memmap(path, dtype, "r", shape=(count, dim))
      entries.jsonl    one JSON object per row, in row order: {"path", "person_id", "camera",
                       "modality", "time"} (null when unknown; "time", the capture time as
                       ISO 8601 UTC, is absent from indexes written before it was kept)
      ann.faiss, ann.json   the optional FAISS IVF-PQ index of ``search --ann`` and what it covers
      lock             held (flock) by the one process writing the index

``meta.json`` is the commit record: rows are appended to the two data files, flushed to disk,
and only then is ``meta.json`` atomically replaced with the new count and byte sizes. Bytes past
the committed sizes (a batch cut short by Ctrl-C or ``kill -9``) are ignored by readers and cut
off by the next writer, so an interrupted build loses at most the batch in flight.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpanet_tf.errors import MPANetError

FORMAT_NAME = "mpanet-tf gallery index"
FORMAT_VERSION = 1
META_FILE = "meta.json"
EMBEDDINGS_FILE = "embeddings.bin"
ENTRIES_FILE = "entries.jsonl"
LOCK_FILE = "lock"
DTYPES = ("float32", "float16")
ENTRY_KEYS = ("path", "person_id", "camera", "modality", "time")


class GalleryIndexError(MPANetError):
    """A gallery index is missing, corrupt, truncated, foreign, unfinished or made by another model."""


def _refuse(path, problem: str) -> GalleryIndexError:
    return GalleryIndexError(f"gallery index {path} {problem}; rebuild it with `mpanet-tf index build`")


def _check_meta(path: Path, meta) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise GalleryIndexError(f"{path} is not a gallery index of mpanet-tf ({META_FILE} is not one); "
                                "pass a folder written by `mpanet-tf index build`")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise GalleryIndexError(f"gallery index {path} has format version {version!r}, this mpanet-tf reads "
                                f"1..{FORMAT_VERSION}; upgrade mpanet-tf or rebuild the index")
    count, dim, dtype = meta.get("count"), meta.get("dim"), meta.get("dtype")
    if not isinstance(count, int) or count < 0:
        raise _refuse(path, f"has a bad count {count!r} in {META_FILE}")
    if dtype not in DTYPES:
        raise _refuse(path, f"has an unknown dtype {dtype!r} in {META_FILE}")
    if (count > 0 or dim is not None) and (not isinstance(dim, int) or dim < 1):
        raise _refuse(path, f"has a bad dim {dim!r} in {META_FILE}")
    for key in ("embeddings_bytes", "entries_bytes"):
        if not isinstance(meta.get(key), int) or meta[key] < 0:
            raise _refuse(path, f"has a bad {key} {meta.get(key)!r} in {META_FILE}")
    if meta["embeddings_bytes"] != count * (dim or 0) * np.dtype(dtype).itemsize:
        raise _refuse(path, f"is inconsistent: {count} rows of {dim} {dtype} are not {meta['embeddings_bytes']} bytes")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str):
        raise _refuse(path, f"names no model fingerprint in {META_FILE}")


def read_meta(path) -> dict:
    """``meta.json`` of the index at ``path``, checked (:class:`GalleryIndexError` otherwise)."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_dir():
        raise GalleryIndexError(f"gallery index {path} does not exist or is not a folder; "
                                "build one with `mpanet-tf index build --output`")
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise GalleryIndexError(f"{path} is not a gallery index (no {META_FILE}); pass a folder written by "
                                "`mpanet-tf index build`")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _refuse(path, f"has a corrupt {META_FILE} ({type(error).__name__})") from None
    except OSError as error:
        raise GalleryIndexError(f"cannot read {meta_file} ({error.strerror or error})") from None
    _check_meta(path, meta)
    return meta


def _read_entries(path: Path, meta: dict) -> list[dict]:
    size = meta["entries_bytes"]
    with open(path / ENTRIES_FILE, "rb") as handle:
        data = handle.read(size)
    if len(data) < size:
        raise _refuse(path, f"is truncated: {ENTRIES_FILE} has {len(data)} of {size} bytes")
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(lines) != meta["count"]:
        raise _refuse(path, f"is corrupt: {ENTRIES_FILE} lists {len(lines)} images for {meta['count']} embeddings")
    entries = []
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise _refuse(path, f"is corrupt: line {number} of {ENTRIES_FILE} is not JSON") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise _refuse(path, f"is corrupt: line {number} of {ENTRIES_FILE} names no image path")
        entries.append(entry)
    return entries


@dataclass
class GalleryIndex:
    """An opened, validated gallery index (read-only).

    Attributes:
        path: the index folder.
        meta: the parsed ``meta.json``.
        entries: one dict per row (``path``, ``person_id``, ``camera``, ``modality``).
    """

    path: Path
    meta: dict
    entries: list

    @classmethod
    def open(cls, path, allow_pending: bool = False) -> "GalleryIndex":
        """Open and validate the index at ``path``.

        Raises:
            GalleryIndexError: not an index, a foreign or newer format, corrupt or truncated files,
                or (unless ``allow_pending``) an unfinished build; one line naming the folder.
        """
        path = Path(os.path.expanduser(os.fspath(path)))
        meta = read_meta(path)
        for name, key in ((EMBEDDINGS_FILE, "embeddings_bytes"), (ENTRIES_FILE, "entries_bytes")):
            file = path / name
            if not file.is_file():
                raise _refuse(path, f"lacks {name}")
            size = file.stat().st_size
            if size < meta[key] or (size != meta[key] and not meta.get("pending")):
                state = "truncated" if size < meta[key] else "corrupt (trailing bytes)"
                raise _refuse(path, f"is {state}: {name} has {size} bytes, {META_FILE} says {meta[key]}")
        if meta.get("pending") and not allow_pending:
            pending = meta["pending"]
            raise GalleryIndexError(
                f"gallery index {path} is an unfinished `index {pending.get('command', 'build')}` "
                f"({meta['count']} images so far); re-run the same command to finish it")
        return cls(path, meta, _read_entries(path, meta))

    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def dim(self) -> int | None:
        return self.meta["dim"]

    @property
    def dtype(self) -> str:
        return self.meta["dtype"]

    @property
    def fingerprint(self) -> str:
        return self.meta["model"]["fingerprint"]

    @property
    def paths(self) -> list[str]:
        return [entry["path"] for entry in self.entries]

    def embeddings(self) -> np.ndarray:
        """The (count, dim) stored rows, memory-mapped read-only (nothing is loaded until used)."""
        if self.count == 0:
            return np.zeros((0, self.dim or 0), dtype=self.dtype)
        return np.memmap(self.path / EMBEDDINGS_FILE, dtype=np.dtype(self.dtype).newbyteorder("<"), mode="r",
                         shape=(self.count, self.dim))

    def size_on_disk(self) -> int:
        """Bytes of every file in the index folder."""
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def check_model(self, fingerprint: str, model_name) -> None:
        """Refuse (one line) a model whose fingerprint is not the index's."""
        check_fingerprint(f"gallery index {self.path}", self.meta["model"], fingerprint, model_name)


def check_fingerprint(what: str, model: dict, fingerprint: str, model_name) -> None:
    """Refuse (one line naming ``what``) a model whose fingerprint is not ``model["fingerprint"]``."""
    if fingerprint != model["fingerprint"]:
        raise GalleryIndexError(
            f"{what} was built by another model (fingerprint {model['fingerprint'][:19]}..., "
            f"{model.get('source')}), not by {model_name} ({fingerprint[:19]}...); "
            "pass the index's model or build an index with this one")
