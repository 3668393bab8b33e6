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

from mpanet_tf import schemas as s
from mpanet_tf.errors import MPANetError

FORMAT_NAME = "mpanet-tf gallery index"
FORMAT_VERSION = 1
META_FILE = "meta.json"
EMBEDDINGS_FILE = "embeddings.bin"
ENTRIES_FILE = "entries.jsonl"
LOCK_FILE = "lock"
DTYPES = ("float32", "float16")
ENTRY_KEYS = ("path", "person_id", "camera", "modality", "time")
#: The longest line of ``entries.jsonl`` a reader accepts (a 4096-byte path, JSON-escaped, fits).
MAX_ENTRY_BYTES = 64 * 1024

_OPTIONAL_TEXT = s.nullable(s.string())
#: ``meta.json`` as :func:`mpanet_tf.index.builder` writes it (keys it does not name are tolerated).
META_SCHEMA = s.mapping({
    "format": s.string(), "format_version": s.integer(1), "count": s.integer(0), "dim": s.nullable(s.integer(1)),
    "dtype": s.string(DTYPES), "embeddings_bytes": s.integer(0), "entries_bytes": s.integer(0),
    "model": s.mapping({"fingerprint": s.string()}, {"kind": _OPTIONAL_TEXT, "source": _OPTIONAL_TEXT}),
    "embedding": s.mapping({"dim": s.nullable(s.integer(1)), "dtype": s.string(DTYPES)},
                           {"image_size": s.nullable(s.list_of(s.integer(1), 2)),
                            "normalization": s.string(), "distance": s.string(),
                            "batch_size": s.integer(1), "mpanet_tf_version": s.string()}),
    "sources": s.list_of(s.mapping({"kind": s.string()})),
    "skipped": s.list_of(s.string()),
    "pending": s.nullable(s.mapping({"command": s.string()}, {"images": s.integer(0)})),
    "created": s.string(), "updated": s.string(),
})
def CAMERA(value, where):
    """An entry's camera: a dataset's camera number or a manifest's camera name."""
    (s.string() if isinstance(value, str) else s.integer())(value, where)


#: One line of ``entries.jsonl`` (other keys are tolerated). A camera is a dataset's camera number or a
#: manifest's camera name; ``time`` the capture time (ISO 8601, UTC), absent in older indexes.
ENTRY_SCHEMA = s.mapping({"path": s.string()}, {
    "person_id": s.nullable(s.integer()), "camera": s.nullable(CAMERA),
    "modality": s.nullable(s.string(("visible", "infrared"))), "time": _OPTIONAL_TEXT})


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
    s.check_document(meta, META_SCHEMA, f"gallery index {path} {META_FILE}", GalleryIndexError,
                     "rebuild the index with `mpanet-tf index build`")
    if meta["embedding"]["dim"] != dim or meta["embedding"]["dtype"] != dtype:
        raise _refuse(path, f"is inconsistent: {META_FILE} field embedding says {meta['embedding']['dim']}-d "
                            f"{meta['embedding']['dtype']}, its dim and dtype {dim}-d {dtype}")


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
    meta = s.read_json_file(meta_file, f"corrupt {META_FILE} of gallery index", GalleryIndexError,
                            "rebuild it with `mpanet-tf index build`")
    _check_meta(path, meta)
    return meta


def _read_entries(path: Path, meta: dict) -> list[dict]:
    """The committed lines of ``entries.jsonl``, read line by line in bounded memory: at most
    :data:`MAX_ENTRY_BYTES` per line, so a huge (or sparse) file is refused, not loaded."""
    size, count = meta["entries_bytes"], meta["count"]
    if size > count * MAX_ENTRY_BYTES:
        raise _refuse(path, f"is corrupt: {META_FILE} field entries_bytes says {size} bytes for {count} images, "
                            f"more than {MAX_ENTRY_BYTES} bytes an image")
    entries, used = [], 0
    with open(path / ENTRIES_FILE, "rb") as handle:
        for number in range(1, count + 1):
            line = handle.readline(min(MAX_ENTRY_BYTES, size - used))
            used += len(line)
            if not line.endswith(b"\n"):
                if used >= size or len(line) < MAX_ENTRY_BYTES:
                    problem = (f"is truncated: {ENTRIES_FILE} has {used} of {size} bytes" if used < size else
                               f"is corrupt: {ENTRIES_FILE} lists {number - 1 + bool(line)} images for {count} "
                               "embeddings")
                    raise _refuse(path, problem)
                raise _refuse(path, f"is corrupt: line {number} of {ENTRIES_FILE} is longer than "
                                    f"{MAX_ENTRY_BYTES} bytes")
            try:
                entry = json.loads(line.decode("utf-8", errors="replace"))
            except (json.JSONDecodeError, RecursionError, ValueError):
                raise _refuse(path, f"is corrupt: line {number} of {ENTRIES_FILE} is not JSON") from None
            s.check_document(entry, ENTRY_SCHEMA, f"gallery index {path} {ENTRIES_FILE} line {number}",
                             GalleryIndexError, "rebuild the index with `mpanet-tf index build`")
            entries.append(entry)
    if used != size:
        raise _refuse(path, f"is corrupt: {ENTRIES_FILE} lists more than {count} images in its {size} bytes")
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

    def check_dim(self, dim: int, model_name) -> None:
        """Refuse (one line) a model whose ``dim``-d embeddings are not the index's."""
        if self.dim is not None and int(dim) != self.dim:
            raise GalleryIndexError(f"gallery index {self.path} holds {self.dim}-d embeddings ({META_FILE} field dim) "
                                    f"but {model_name} gives {int(dim)}-d ones; pass the index's model or rebuild it")

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
