"""The person-search service without HTTP: one embedder, one gallery store, one dynamic batcher.

Every request's image is checked (:func:`mpanet_tf.serve.security.check_image`) and decoded by the
one loading path (:func:`mpanet_tf.data.images.image_from_bytes`, the pixels ``search --index``
embeds) in a thread, then queued; the batcher (:mod:`mpanet_tf.serve.batching`) embeds the images
of concurrent embed/search/add requests in one embedder call and, in the same worker thread, adds
the batch's new gallery images (one durable store append) and then searches each query. Searches
and adds therefore never interleave: a search sees every add acknowledged before it was queued.

Uploaded gallery images are kept in the service's own folder under content-addressed names
(``<sha256>.<format>``, never the client's file name), written and fsync'ed before the index
append that names them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpanet_tf.data.images import image_from_bytes, image_suffix
from mpanet_tf.errors import ConfigError
from mpanet_tf.index.exact import unit_rows
from mpanet_tf.index.fingerprint import model_fingerprint
from mpanet_tf.index.store import open_store
from mpanet_tf.index.store_interface import Hit, SearchFilter
from mpanet_tf.io.atomic import atomic_write_bytes
from mpanet_tf.runtimes.embedder import Embedder, load_embedder
from mpanet_tf.serve.batching import DynamicBatcher
from mpanet_tf.serve.metrics import Metrics
from mpanet_tf.serve.security import check_image


@dataclass
class Query:
    """A search: ``top_k`` entries passing ``filters``; ``ann`` uses the index's FAISS search."""

    top_k: int = 10
    filters: SearchFilter | None = None
    ann: bool = False
    nprobe: int | None = None


@dataclass
class Upload:
    """A gallery image to add: its file bytes and labels (each may be None)."""

    data: bytes
    person_id: int | None = None
    camera: str | None = None
    modality: str | None = None
    time: str | None = None


def default_uploads(index) -> Path:
    """Where uploads go unless ``--uploads`` says otherwise: ``<index>.uploads`` beside the index."""
    index = Path(index).expanduser().absolute()
    return index.with_name(index.name + ".uploads")


class SearchService:
    """Embed, search and add, batched (module docstring).

    Args:
        model: an :class:`Embedder` or a model artifact path (:func:`load_embedder`).
        index: the gallery index folder (opened writable: the service holds it while it runs).
        uploads: the folder for added images (default :func:`default_uploads`).
        max_batch, batch_timeout_ms: the batcher's (:class:`DynamicBatcher`).
    """

    def __init__(self, model, index, uploads=None, max_batch: int = 32, batch_timeout_ms: float = 5.0,
                 metrics: Metrics | None = None):
        self.embedder: Embedder = load_embedder(model)
        self.store = open_store(os.fspath(Path(index).expanduser()), writable=True)
        self.store.check_model(model_fingerprint(self.embedder), self.embedder.source or "the given model")
        self.uploads = Path(uploads).expanduser().absolute() if uploads else default_uploads(index)
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.metrics = metrics or Metrics()
        self.embedder_calls = 0
        self.batcher = DynamicBatcher(self._process, max_batch, batch_timeout_ms, on_batch=self.metrics.observe_batch)

    @property
    def image_size(self):
        return self.embedder.image_size or (1, 1)  # only the bytes-fed SavedModel has no size, and needs none

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.store.close()

    # ------------------------------------------------------------ the requests
    def _decode(self, data: bytes, name: str):
        check_image(data, name)
        pixels = image_from_bytes(data, self.image_size, name)  # decodes (and so checks) even for bytes-fed models
        return np.frombuffer(data, np.uint8) if self.embedder.wants_bytes else pixels

    async def _decoded(self, data: bytes, name: str):
        """Decode in a thread; the batcher knows the request is coming (a batch waits for it, see
        :meth:`DynamicBatcher.arriving`). The caller submits right after, with no ``await`` between."""
        with self.batcher.arriving():
            return await asyncio.to_thread(self._decode, data, name)

    async def embed(self, data: bytes) -> np.ndarray:
        """(D,) float32: the embedder's output for the image file bytes ``data``."""
        image = await self._decoded(data, "the uploaded image")
        return await self.batcher.submit(("embed", [image], None))

    async def search(self, data: bytes, query: Query) -> list[Hit]:
        """The ranked gallery entries for the image file bytes ``data``."""
        image = await self._decoded(data, "the query image")
        return await self.batcher.submit(("search", [image], query))

    async def add(self, uploads: list[Upload]) -> list[int]:
        """Add ``uploads`` to the gallery; returns their entry ids once they are durable."""
        if not uploads:
            raise ConfigError("no image to add; send one or more image files")
        with self.batcher.arriving():  # announced from the first image's decode to the submit
            images = [await self._decoded(u.data, f"uploaded image {n + 1}") for n, u in enumerate(uploads)]
        return await self.batcher.submit(("add", images, uploads), size=len(images))

    # ------------------------------------------------- the worker thread's side
    def _embed(self, images: list) -> np.ndarray:
        """One embedder call per ``max_batch`` images (one call in all unless a request is larger)."""
        chunks = []
        for start in range(0, len(images), self.batcher.max_batch):
            part = images[start:start + self.batcher.max_batch]
            batch = np.array([i.tobytes() for i in part], dtype=object) if self.embedder.wants_bytes else np.stack(part)
            self.embedder_calls += 1
            chunks.append(self.embedder(batch).reshape(len(part), -1))
        return np.concatenate(chunks)

    def _store_upload(self, upload: Upload) -> str:
        digest = hashlib.sha256(upload.data).hexdigest()
        path = self.uploads / f"{digest}{image_suffix(upload.data)}"
        if not path.is_file() or path.stat().st_size != len(upload.data):
            atomic_write_bytes(path, upload.data)
        return os.fspath(path)

    def _process(self, payloads: list) -> list:
        """Embed every image of the batch at once; then adds (one append), then searches."""
        features = self._embed([image for _, images, _ in payloads for image in images])
        starts = np.cumsum([0] + [len(images) for _, images, _ in payloads])
        results: list = [None] * len(payloads)
        adds = [n for n, (kind, _, _) in enumerate(payloads) if kind == "add"]
        if adds:
            rows = np.concatenate([features[starts[n]:starts[n + 1]] for n in adds])
            entries = [{"path": self._store_upload(u), "person_id": u.person_id, "camera": u.camera,
                        "modality": u.modality, "time": u.time} for n in adds for u in payloads[n][2]]
            try:
                ids = self.store.add(unit_rows(rows), entries)
            except Exception as error:  # every add of the batch fails alike; searches still run
                ids, failed = None, error
            for n in adds:
                count = len(payloads[n][1])
                results[n] = failed if ids is None else ids[:count]
                ids = None if ids is None else ids[count:]
        for n, (kind, _, query) in enumerate(payloads):
            row = features[starts[n]:starts[n + 1]]
            if kind == "embed":
                results[n] = row[0]
            elif kind == "search":
                try:
                    results[n] = self.store.search(unit_rows(row), query.top_k, query.filters, query.ann,
                                                   query.nprobe)[0]
                except Exception as error:
                    results[n] = error
        return results
