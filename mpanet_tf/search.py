"""Image search: rank every image of a folder against one query image (``mpanet-tf search``).

Distance: the Euclidean distance between **L2-normalised** embeddings,
``d(q, g) = || q/||q|| - g/||g|| ||_2`` in [0, 2], smaller is more similar. This is the ranking of
the SYSU-MM01 evaluation (facts §5.1: L2-normalise, then Euclidean / cosine) and works for either
modality as query or gallery.

The model can be any artifact of the project (:func:`open_embedder`):

- a run folder or a ``.keras`` file: the Keras model, images through the evaluation path
  (:func:`mpanet_tf.data.images.load_image` -> ``model.embed``);
- an exported SavedModel (``saved_models/NAME``, highest version, or ``saved_models/NAME/<v>``):
  its ``serve_encoded`` signature on the file bytes; mpanet_tf's Keras model is not needed;
- an ONNX file (or ``saved_models/NAME`` holding only ``onnx/<v>/model.onnx``): ONNX Runtime on
  images resized by the evaluation path.

All three share the one feature extractor of evaluation
(:func:`mpanet_tf.eval.features.extract_features`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mpanet_tf.errors import BadImageError, CheckpointError, DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def find_images(folder) -> list[Path]:
    """Every ``.jpg/.jpeg/.png/.bmp`` file under ``folder`` (recursive, any case), sorted.

    Raises:
        DatasetError: ``folder`` is not a folder or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"gallery folder {folder} does not exist or is not a folder; pass --gallery DIR")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DatasetError(f"gallery folder {folder} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} "
                           "image (searched recursively)")
    return images


@dataclass
class Embedder:
    """An embedding function for image batches with what feeds it.

    Attributes:
        embed: (N, H, W, 3) float32 in [0, 255] at ``image_size`` -> (N, D) float32, or, when
            ``embed.wants_bytes`` is True, file bytes (N,) -> (N, D).
        image_size: (H, W) the model expects (None when unknown and not needed).
        kind: ``"keras"``, ``"savedmodel"`` or ``"onnx"``.
        source: the file or folder it was loaded from.
    """

    embed: Callable
    image_size: tuple[int, int] | None
    kind: str
    source: Path


def _savedmodel_embedder(folder: Path) -> Embedder:
    import tensorflow as tf

    from mpanet_tf.export import EMBEDDINGS, read_export_info

    loaded = tf.saved_model.load(os.fspath(folder))
    if "serve_encoded" not in loaded.signatures:
        raise CheckpointError(f"SavedModel {folder} has no serve_encoded signature; re-export it with "
                              "`mpanet-tf export --format savedmodel`")
    signature = loaded.signatures["serve_encoded"]

    def embed(image_bytes):
        return signature(image_bytes=tf.constant(image_bytes, dtype=tf.string))[EMBEDDINGS].numpy()

    embed.wants_bytes = True
    embed.loaded = loaded  # keep the SavedModel's resources alive with the function
    info = read_export_info(folder)
    size = (info["image_height"], info["image_width"]) if "image_height" in info else None
    return Embedder(embed, size, "savedmodel", folder)


def _onnx_embedder(path: Path) -> Embedder:
    from mpanet_tf.onnx_export import onnx_embedder, onnx_session, session_image_size

    session = onnx_session(path)
    return Embedder(onnx_embedder(session), session_image_size(session), "onnx", path)


def _latest_onnx(folder: Path) -> Path | None:
    from mpanet_tf.export import ONNX_DIR, ONNX_FILE

    versions = [p for p in (folder / ONNX_DIR).glob("*") if p.name.isdigit() and (p / ONNX_FILE).is_file()]
    return max(versions, key=lambda p: int(p.name)) / ONNX_FILE if versions else None


def open_embedder(path) -> Embedder:
    """Open a run folder, ``.keras`` file, SavedModel folder or ``.onnx`` file for embedding.

    Raises:
        CheckpointError: nothing loadable at ``path``.
    """
    from mpanet_tf.export import find_savedmodel

    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return _onnx_embedder(path)
    savedmodel = find_savedmodel(path)
    if savedmodel is not None:
        return _savedmodel_embedder(savedmodel)
    if path.is_dir() and not (path / "config.json").is_file():
        onnx = _latest_onnx(path)
        if onnx is not None:
            return _onnx_embedder(onnx)
    from mpanet_tf.model import load_model

    model = load_model(path)
    return Embedder(model.embed, model.image_size, "keras", path)


def rank_by_distance(query_feature, gallery_features):
    """Rank a gallery against one query by the Euclidean distance of L2-normalised features.

    Args:
        query_feature: (D,) embedding.
        gallery_features: (G, D) embeddings.

    Returns:
        (order (G,) int indices best first, distances (G,) float32 in that order). Ties keep the
        gallery order.
    """
    query = np.asarray(query_feature, dtype=np.float64).reshape(-1)
    gallery = np.asarray(gallery_features, dtype=np.float64).reshape(-1, query.size)
    query = query / max(np.linalg.norm(query), 1e-12)
    gallery = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    distances = np.linalg.norm(gallery - query, axis=1)
    order = np.argsort(distances, kind="stable")
    return order, distances[order].astype(np.float32)


@dataclass
class SearchResult:
    """A ranked gallery.

    Attributes:
        query: the query image.
        paths: every embedded gallery image, best match first.
        distances: (G,) float32, ascending.
        skipped: undecodable gallery files left out (with ``skip_bad_images``).
    """

    query: Path
    paths: list[Path]
    distances: np.ndarray
    skipped: list[Path] = field(default_factory=list)

    def top(self, k: int) -> list[tuple[int, float, Path]]:
        """[(rank starting at 1, distance, path)] for the first ``k`` matches."""
        return [(rank, float(d), p) for rank, (d, p) in
                enumerate(zip(self.distances[:k], self.paths[:k]), start=1)]


def search(model, query, gallery, batch_size: int = 32, skip_bad_images: bool = False,
           progress: bool = False) -> SearchResult:
    """Embed ``query`` and every image under ``gallery``, and rank the gallery.

    Args:
        model: an :class:`Embedder` or a path accepted by :func:`open_embedder`.
        query: the query image file.
        gallery: a folder searched recursively (:func:`find_images`) or a list of image files.
        batch_size: images per forward pass.
        skip_bad_images: leave undecodable gallery files out (listed in ``skipped``) instead of
            raising.

    Raises:
        BadImageError: the query, or a gallery file without ``skip_bad_images``, cannot be decoded.
        DatasetError: no gallery image.
    """
    from mpanet_tf.eval.features import extract_features

    embedder = model if isinstance(model, Embedder) else open_embedder(model)
    paths = find_images(gallery) if isinstance(gallery, (str, os.PathLike)) else [Path(p) for p in gallery]
    size = embedder.image_size or (1, 1)  # only the bytes-fed SavedModel has no size, and needs none
    try:
        query_feature = extract_features(embedder.embed, [os.fspath(query)], size, 1, progress=False)
    except BadImageError as error:
        raise DatasetError(f"cannot use query image {query}: {str(error).split('; ')[0]}; "
                           "pass a readable JPEG/PNG/BMP file with --query") from None
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
