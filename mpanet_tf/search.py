"""Image search: rank every image of a folder against one query image (``mpanet-tf search``).

Distance: the Euclidean distance between **L2-normalised** embeddings,
``d(q, g) = || q/||q|| - g/||g|| ||_2`` in [0, 2], smaller is more similar. This is the ranking of
the SYSU-MM01 evaluation (design.md §5.1: L2-normalise, then Euclidean / cosine) and works for either
modality as query or gallery.

The model can be any artifact of the project (:func:`mpanet_tf.runtimes.embedder.load_embedder`):

- a run folder or a ``.keras`` file: the Keras model, images through the evaluation path
  (:func:`mpanet_tf.data.images.load_image` -> ``model.embed``);
- an exported SavedModel (``saved_models/NAME``, highest version, or ``saved_models/NAME/<v>``):
  its ``serve_encoded`` signature on the file bytes; mpanet_tf's Keras model is not needed;
- an ONNX file (or ``saved_models/NAME`` holding only ``onnx/<v>/model.onnx``): ONNX Runtime on
  images resized by the evaluation path; the int8 export (``int8/<v>/model.onnx``) likewise;
- any other runtime registered in :mod:`mpanet_tf.runtimes`.

All of them share the one feature extractor of evaluation
(:func:`mpanet_tf.eval.features.extract_features`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpanet_tf.data.image_files import find_images
from mpanet_tf.errors import BadImageError, DatasetError
from mpanet_tf.eval.features import extract_features
from mpanet_tf.index.exact import exact_search, unit_rows
from mpanet_tf.index.fingerprint import model_fingerprint
from mpanet_tf.index.format import GalleryIndexError
from mpanet_tf.index.store import open_store
from mpanet_tf.runtimes.embedder import Embedder, load_embedder


def rank_by_distance(query_feature, gallery_features):
    """Rank a gallery against one query by the Euclidean distance of L2-normalised features.

    The gallery rows are normalised and stored as float32 exactly as a gallery index stores them
    (:mod:`mpanet_tf.index`), and ranked by the index's exact search
    (:func:`mpanet_tf.index.exact.exact_search`), so ``search --gallery`` and ``search --index``
    over the same images return the same ranking.

    Args:
        query_feature: (D,) embedding.
        gallery_features: (G, D) embeddings.

    Returns:
        (order (G,) int indices best first, distances (G,) float32 in that order). Ties keep the
        gallery order.
    """
    query = np.asarray(query_feature, dtype=np.float64).reshape(-1)
    gallery = unit_rows(np.asarray(gallery_features).reshape(-1, query.size)).astype(np.float32)
    order, distances = exact_search(query, gallery)
    return order[0], distances[0]


@dataclass
class SearchResult:
    """A ranked gallery.

    Attributes:
        query: the query image.
        paths: every embedded gallery image, best match first.
        distances: (G,) float32, ascending.
        skipped: undecodable gallery files left out (with ``skip_bad_images``).
        gallery_size: images in the gallery (more than ``paths`` when only the top-k was ranked).
        hits: with a gallery index, the :class:`~mpanet_tf.index.store_interface.Hit` of each path
            (entry id and entry: identity, camera, modality, capture time).
    """

    query: Path
    paths: list[Path]
    distances: np.ndarray
    skipped: list[Path] = field(default_factory=list)
    gallery_size: int = 0
    hits: list = field(default_factory=list)

    def __post_init__(self):
        self.gallery_size = self.gallery_size or len(self.paths)

    def top(self, k: int) -> list[tuple[int, float, Path]]:
        """[(rank starting at 1, distance, path)] for the first ``k`` matches."""
        return [(rank, float(d), p) for rank, (d, p) in
                enumerate(zip(self.distances[:k], self.paths[:k]), start=1)]


def embed_query(embedder: Embedder, query) -> np.ndarray:
    """(1, D) embedding of the query image file.

    Raises:
        DatasetError: the query cannot be read or decoded (one line naming it).
    """
    size = embedder.image_size or (1, 1)  # only the bytes-fed SavedModel has no size, and needs none
    try:
        return extract_features(embedder.embed, [os.fspath(query)], size, 1, progress=False)
    except BadImageError as error:
        raise DatasetError(f"cannot use query image {query}: {str(error).split('; ')[0]}; "
                           "pass a readable JPEG/PNG/BMP file with --query") from None


def search(model, query, gallery, batch_size: int = 32, skip_bad_images: bool = False,
           progress: bool = False) -> SearchResult:
    """Embed ``query`` and every image under ``gallery``, and rank the gallery.

    Args:
        model: an :class:`Embedder` or a path accepted by :func:`~mpanet_tf.runtimes.embedder.load_embedder`.
        query: the query image file.
        gallery: a folder searched recursively (:func:`~mpanet_tf.data.image_files.find_images`) or a list of
            image files.
        batch_size: images per forward pass.
        skip_bad_images: leave undecodable gallery files out (listed in ``skipped``) instead of
            raising.

    Raises:
        BadImageError: the query, or a gallery file without ``skip_bad_images``, cannot be decoded.
        DatasetError: no gallery image.
    """
    embedder = model if isinstance(model, Embedder) else load_embedder(model)
    paths = find_images(gallery) if isinstance(gallery, (str, os.PathLike)) else [Path(p) for p in gallery]
    size = embedder.image_size or (1, 1)  # only the bytes-fed SavedModel has no size, and needs none
    query_feature = embed_query(embedder, query)
    result = extract_features(embedder.embed, [os.fspath(p) for p in paths], size, int(batch_size),
                              progress=progress, skip_bad_images=skip_bad_images)
    skipped = []
    if skip_bad_images:
        features, skipped_indices = result
        skipped = [paths[i] for i in skipped_indices]
        dropped = set(skipped_indices)
        paths = [p for i, p in enumerate(paths) if i not in dropped]
    else:
        features = result
    if not paths:
        raise DatasetError(f"no decodable image in gallery {gallery}; all {len(skipped)} files failed to decode")
    order, distances = rank_by_distance(query_feature[0], features)
    return SearchResult(Path(query), [paths[i] for i in order], distances, skipped)


def search_index(model, query, index, top_k: int = 10, ann: bool = False, nprobe: int | None = None,
                 filters=None) -> SearchResult:
    """Rank the images of a gallery index (``mpanet-tf index build``) against ``query``, embedding
    only the query.

    ``index`` is any gallery store location (:func:`mpanet_tf.index.store.open_store`: an ``.mpidx``
    folder, ``milvus:PATH.db``, ``milvus://HOST:PORT/COLLECTION``). Exact by default (the ranking
    ``search`` returns for the same images); ``ann`` ranks the approximate index's candidates
    (FAISS IVF-PQ for ``.mpidx``, the collection's IVF/HNSW index for Milvus) by the exact distance.
    ``filters`` (:class:`~mpanet_tf.index.store_interface.SearchFilter`) restricts the gallery to
    some cameras, modalities and a capture-time range.

    Raises:
        GalleryIndexError: a missing, corrupt, unfinished or foreign index, or one built by another
            model than ``model`` (one line).
    """
    with open_store(index) as store:
        embedder = model if isinstance(model, Embedder) else load_embedder(model)
        store.check_model(model_fingerprint(embedder), embedder.source or "the given model")
        count = store.count()
        if count == 0:
            raise DatasetError(f"gallery index {store.location} holds no image; add some with `mpanet-tf index add`")
        query_feature = embed_query(embedder, query)
        if store.dim is not None and query_feature.shape[-1] != store.dim:
            raise GalleryIndexError(f"gallery index {store.location} holds {store.dim}-d embeddings but "
                                    f"{embedder.source or 'the given model'} gives {query_feature.shape[-1]}-d ones; "
                                    "pass the index's model or rebuild the index")
        hits = store.search(query_feature, top_k, filters=filters, ann=ann, nprobe=nprobe)[0]
    return SearchResult(Path(query), [Path(h.entry["path"]) for h in hits],
                        np.array([h.distance for h in hits], np.float32), gallery_size=count, hits=hits)
