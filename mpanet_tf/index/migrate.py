"""``mpanet-tf index migrate SRC DST``: copy a gallery from one store to the other, no re-embedding.

The rows (exactly as stored: a float16 gallery stays float16), the entries in entry-id order, the
model fingerprint and description, the image size and the sources are copied ``batch_rows`` at a
time; each batch is durable before the next is read (:meth:`GalleryStore.add`). Resumable: DST
already holding the first n entries of SRC (same fingerprint, dim, dtype, and its last entry the
same image as SRC's n-th) continues at entry n. Verified at the end: DST holds as many entries as
SRC, with the same fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpanet_tf.errors import ConfigError
from mpanet_tf.index.builder import appender_for, create_index
from mpanet_tf.index.format import GalleryIndexError
from mpanet_tf.index.milvus_store import MilvusStore, is_milvus_location
from mpanet_tf.index.mpidx_store import MpidxStore
from mpanet_tf.index.store import open_store


def _provenance(store) -> dict:
    """What travels with the rows: model, sources, skipped images, image size."""
    meta = store.meta if isinstance(store, MilvusStore) else store.index.meta
    return {"model": {k: meta["model"].get(k) for k in ("kind", "source")}, "sources": meta["sources"],
            "skipped": meta["skipped"], "image_size": store.image_size}


def _open_destination(destination: str, source, batch_rows: int):
    """DST opened for writing, created like SRC when it does not exist."""
    info = _provenance(source)
    if is_milvus_location(destination):
        store = MilvusStore.open(destination, writable=True, allow_pending=True, missing_ok=True)
        if store is None:
            store = MilvusStore.create(destination, source.fingerprint, source.dim, source.dtype, info["image_size"],
                                       model=info["model"],
                                       extra={"sources": info["sources"], "skipped": info["skipped"],
                                              "pending": {"command": "migrate", "source": {"kind": "migrate"}}})
        return store
    folder = Path(os.path.expanduser(destination))
    if not folder.exists():
        create_index(folder, source.fingerprint, None, source.dtype, batch_rows, model=info["model"],
                image_size=info["image_size"])
        with appender_for(folder) as appender:
            appender.write_meta(sources=info["sources"], skipped=info["skipped"],
                                pending={"command": "migrate", "source": {"kind": "migrate"}})
    return MpidxStore(folder, writable=True)


def _finish(store) -> None:
    if isinstance(store, MilvusStore):
        store.write_meta(pending=None)
    else:
        with appender_for(store.index.path) as appender:
            appender.write_meta(pending=None)
        store._open(allow_pending=False)


def migrate(source_location, destination_location, batch_rows: int = 1024) -> tuple[int, str]:
    """Copy the gallery at ``source_location`` to ``destination_location`` (either store, either way).

    Returns:
        (entries in DST, its fingerprint), verified equal to SRC's.

    Raises:
        GalleryIndexError: SRC missing, unfinished or foreign; DST another model's gallery, of another
            dim or dtype, or not a prefix of SRC (one line).
    """
    if int(batch_rows) < 1:
        raise ConfigError(f"--batch-rows must be >= 1, got {batch_rows}")
    source_location, destination_location = os.fspath(source_location), os.fspath(destination_location)
    if is_milvus_location(source_location) == is_milvus_location(destination_location):
        raise ConfigError("index migrate copies between the two stores: one of SRC and DST is an .mpidx folder, "
                          "the other milvus:PATH.db or milvus://HOST:PORT/COLLECTION")
    with open_store(source_location) as source:
        total = source.count()
        if total == 0:
            raise GalleryIndexError(f"gallery {source_location} is empty; nothing to migrate")
        with _open_destination(destination_location, source, int(batch_rows)) as destination:
            destination.check_model(source.fingerprint, source_location)
            if destination.dim not in (None, source.dim) or destination.dtype != source.dtype:
                raise GalleryIndexError(f"{destination_location} holds {destination.dim}-d {destination.dtype} rows, "
                                        f"{source_location} {source.dim}-d {source.dtype}; choose another DST")
            entries = source.entries()
            done = destination.count()
            if done > total or (done and destination.entry(done - 1)["path"] != entries[done - 1]["path"]):
                raise GalleryIndexError(f"{destination_location} is not a partial copy of {source_location} (its "
                                        f"{done} entries differ); choose another DST")
            for start in range(done, total, int(batch_rows)):
                stop = min(total, start + int(batch_rows))
                destination.add(source.rows(start, stop), entries[start:stop])
            count = destination.count()
            if count != total or destination.fingerprint != source.fingerprint:
                raise GalleryIndexError(f"{destination_location} holds {count} entries after the copy, "
                                        f"{source_location} {total}; re-run the migration")
            _finish(destination)
            return count, destination.fingerprint
