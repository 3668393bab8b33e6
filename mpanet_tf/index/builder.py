"""Building and growing a gallery index: embed once, batch by batch, resumable.

``build_index`` creates ``gallery.mpidx/`` (:mod:`mpanet_tf.index.format`) and embeds every image
of one source; ``add_to_index`` appends the images of another source. Both embed only the images
not yet in the index, ``batch_size`` at a time through the evaluation's one feature extractor
(:func:`mpanet_tf.eval.features.extract_features`), and commit after every batch: the rows and
entries are appended and flushed, then ``meta.json`` is atomically replaced. A build stopped by
Ctrl-C or ``kill -9`` therefore keeps every committed batch, and re-running the same command
continues after the last one; the index is usable again once the run finishes. Batches start at
the first image not yet embedded, so a resumed build embeds the same batches as an uninterrupted
one and stores the same rows.

Rows are stored L2-normalised (:func:`mpanet_tf.index.exact.unit_rows`), in float32 or float16.
Only the model whose fingerprint (:mod:`mpanet_tf.index.fingerprint`) is stored may add to an
index. One process writes an index at a time (:func:`mpanet_tf.index.lock.write_lock`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mpanet_tf import __version__
from mpanet_tf.errors import ConfigError
from mpanet_tf.eval.features import extract_features
from mpanet_tf.index.exact import unit_rows
from mpanet_tf.index.fingerprint import model_fingerprint
from mpanet_tf.index.format import (
    DTYPES, EMBEDDINGS_FILE, ENTRIES_FILE, FORMAT_NAME, FORMAT_VERSION, META_FILE, GalleryIndex, GalleryIndexError,
)
from mpanet_tf.index.lock import write_lock
from mpanet_tf.index.sources import resolve_entries
from mpanet_tf.io.atomic import atomic_write_json
from mpanet_tf.io.staging import staging_folder
from mpanet_tf.runtimes.embedder import load_embedder


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _create(output: Path, fingerprint: str, embedder, dtype: str, batch_size: int) -> None:
    """Create an empty index at ``output`` (written in a staging folder beside it, then renamed)."""
    with staging_folder(output) as temp:
        (temp / EMBEDDINGS_FILE).touch()
        (temp / ENTRIES_FILE).touch()
        size = list(embedder.image_size) if getattr(embedder, "image_size", None) else None
        source = getattr(embedder, "source", None)
        atomic_write_json(temp / META_FILE, {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "count": 0, "dim": None, "dtype": dtype, "embeddings_bytes": 0, "entries_bytes": 0,
            "model": {"fingerprint": fingerprint, "kind": getattr(embedder, "kind", None),
                      "source": os.path.abspath(source) if source else None},
            "embedding": {"image_size": size, "dim": None, "dtype": dtype, "normalization": "l2",
                          "distance": "euclidean", "batch_size": int(batch_size), "mpanet_tf_version": __version__},
            "sources": [], "skipped": [], "pending": None, "created": _now(), "updated": _now(),
        })
        os.rename(temp, output)  # not replace_folder: an index another process just created is kept


class _Appender:
    """Appends committed batches to an index folder (the caller holds the lock)."""

    def __init__(self, index: GalleryIndex):
        self.folder, self.meta = index.path, dict(index.meta)
        self.itemsize = np.dtype(self.meta["dtype"]).itemsize
        # drop whatever an interrupted batch left past the committed sizes
        for name, key in ((EMBEDDINGS_FILE, "embeddings_bytes"), (ENTRIES_FILE, "entries_bytes")):
            with open(self.folder / name, "r+b") as handle:
                handle.truncate(self.meta[key])

    def write_meta(self, **changes) -> None:
        self.meta.update(changes, updated=_now())
        atomic_write_json(self.folder / META_FILE, self.meta)

    def append(self, rows: np.ndarray, entries: list[dict], skipped: list[str]) -> None:
        dim = self.meta["dim"]
        if rows.size and dim is not None and rows.shape[1] != dim:
            raise GalleryIndexError(f"the model gives {rows.shape[1]}-d embeddings but gallery index {self.folder} "
                                    f"holds {dim}-d ones; pass the index's model")
        data = np.ascontiguousarray(rows, dtype=np.dtype(self.meta["dtype"]).newbyteorder("<")).tobytes()
        lines = "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")
        for name, payload in ((EMBEDDINGS_FILE, data), (ENTRIES_FILE, lines)):
            with open(self.folder / name, "ab") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        if rows.size and dim is None:
            dim = int(rows.shape[1])
            self.meta["embedding"] = {**self.meta["embedding"], "dim": dim}
        self.write_meta(count=self.meta["count"] + len(entries), dim=dim,
                        embeddings_bytes=self.meta["embeddings_bytes"] + len(data),
                        entries_bytes=self.meta["entries_bytes"] + len(lines),
                        skipped=self.meta["skipped"] + skipped)


def _embed_pending(appender: _Appender, embedder, pending: list[dict], batch_size: int, skip_bad_images: bool,
                   progress: bool) -> None:
    from tqdm.auto import tqdm

    size = embedder.image_size or (1, 1)  # only the bytes-fed SavedModel has no size, and needs none
    with tqdm(total=len(pending), desc="index", unit="img", disable=not progress) as bar:
        for start in range(0, len(pending), batch_size):
            batch = pending[start:start + batch_size]
            result = extract_features(embedder.embed, [e["path"] for e in batch], size, batch_size,
                                      progress=False, skip_bad_images=skip_bad_images)
            features, dropped = result if skip_bad_images else (result, [])
            kept = [e for i, e in enumerate(batch) if i not in set(dropped)]
            rows = unit_rows(features) if len(kept) else np.zeros((0, appender.meta["dim"] or 0))
            appender.append(rows, kept, [batch[i]["path"] for i in dropped])
            bar.update(len(batch))


def _update(folder: Path, embedder, fingerprint: str, entries: list[dict], source: dict, command: str,
            batch_size: int, skip_bad_images: bool, progress: bool) -> GalleryIndex:
    with write_lock(folder):
        index = GalleryIndex.open(folder, allow_pending=True)
        index.check_model(fingerprint, embedder.source or "the given model")
        known = set(index.paths) | set(index.meta["skipped"])
        pending = [e for e in entries if e["path"] not in known]
        appender = _Appender(index)
        sources = appender.meta["sources"] + ([source] if source not in appender.meta["sources"] else [])
        appender.write_meta(sources=sources, pending={"command": command, "source": source,
                                                       "images": len(pending)})
        _embed_pending(appender, embedder, pending, int(batch_size), skip_bad_images, progress)
        appender.write_meta(pending=None)
    return GalleryIndex.open(folder)


def _check_batch(batch_size) -> int:
    if int(batch_size) < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    return int(batch_size)


def build_index(model, output, images=None, dataset: str | None = None, data_root=None, split: str = "gallery",
                trial: int = 1, dtype: str = "float32", batch_size: int = 32, skip_bad_images: bool = False,
                progress: bool = True) -> GalleryIndex:
    """``mpanet-tf index build``: embed every image of one source into a new index at ``output``.

    Re-running it on an index it left unfinished continues the build (the same model and source
    are required); on a finished one it embeds only images the source gained since.

    Args:
        model: a model artifact path, :class:`~mpanet_tf.runtimes.embedder.Embedder` or Keras model.
        output: the index folder (``gallery.mpidx``).
        images: a folder of images (searched recursively); or
        dataset, data_root, split, trial: a dataset split (:func:`~mpanet_tf.index.sources.dataset_entries`).
        dtype: ``"float32"`` or ``"float16"`` storage of the unit embeddings.
        batch_size: images per forward pass and per commit.

    Raises:
        GalleryIndexError: ``output`` exists but is not an index of this model, dtype and source.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    batch_size = _check_batch(batch_size)
    output = Path(os.path.expanduser(os.fspath(output)))
    entries, source = resolve_entries(images, dataset, data_root, split, trial)
    embedder = load_embedder(model)
    fingerprint = model_fingerprint(embedder)
    if output.exists():
        index = GalleryIndex.open(output, allow_pending=True)
        if index.dtype != dtype:
            raise GalleryIndexError(f"gallery index {output} stores {index.dtype}, not {dtype}; pass --dtype "
                                    f"{index.dtype} to continue it, or another --output")
        if index.meta["sources"] and source not in index.meta["sources"]:
            raise GalleryIndexError(f"gallery index {output} already exists and was built from another source; "
                                    "add images to it with `mpanet-tf index add`, or choose another --output")
    else:
        _create(output, fingerprint, embedder, dtype, batch_size)
    return _update(output, embedder, fingerprint, entries, source, "build", batch_size, skip_bad_images, progress)


def add_to_index(index, model, images=None, dataset: str | None = None, data_root=None, split: str = "gallery",
                 trial: int = 1, batch_size: int = 32, skip_bad_images: bool = False,
                 progress: bool = True) -> GalleryIndex:
    """``mpanet-tf index add``: append the images of a source that the index does not hold yet.

    Raises:
        GalleryIndexError: not an index, or one built by another model (one line).
    """
    batch_size = _check_batch(batch_size)
    folder = Path(os.path.expanduser(os.fspath(index)))
    GalleryIndex.open(folder, allow_pending=True)  # validate before any embedding work
    entries, source = resolve_entries(images, dataset, data_root, split, trial)
    embedder = load_embedder(model)
    return _update(folder, embedder, model_fingerprint(embedder), entries, source, "add", batch_size,
                   skip_bad_images, progress)


def index_from_features(output, features, entries: list[dict], fingerprint: str, dtype: str = "float32",
                        source: dict | None = None, chunk_rows: int | None = None) -> GalleryIndex:
    """Write an index of precomputed embeddings (``features`` (N, D), any scale; normalised here).

    For embeddings computed elsewhere (``eval --save-features``, the gallery-scale benchmark's
    synthetic rows): ``entries`` holds one dict per row (at least ``"path"``), ``fingerprint``
    names the model that made them (:func:`~mpanet_tf.index.fingerprint.model_fingerprint`).
    ``features`` may be a memmap: it is read ``chunk_rows`` rows at a time (default: 128 MiB of
    float64).
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if len(entries) != len(features):
        raise ValueError(f"{len(features)} embeddings need as many entries, got {len(entries)}")
    output = Path(output)
    if output.exists():
        raise GalleryIndexError(f"{output} already exists; choose another output")
    chunk_rows = int(chunk_rows or max(1, 2**27 // (8 * max(1, int(features.shape[1])))))
    _create(output, fingerprint, None, dtype, chunk_rows)
    full = [{key: entry.get(key) for key in ("path", "person_id", "camera", "modality")} for entry in entries]
    with write_lock(output):
        appender = _Appender(GalleryIndex.open(output, allow_pending=True))
        appender.write_meta(sources=[source or {"kind": "features"}])
        for start in range(0, len(full), chunk_rows):
            appender.append(unit_rows(features[start:start + chunk_rows]), full[start:start + chunk_rows], [])
    return GalleryIndex.open(output)
