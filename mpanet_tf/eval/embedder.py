"""Any model artifact of the project behind one embedding callable (evaluation, search, pictures).

:func:`load_embedder` opens

- an in-memory :class:`~mpanet_tf.model.MPANet`: ``model.embed``; a run folder or a ``.keras``
  file: the same embedding through the inference graph with the backbone BatchNorms folded into
  the convolutions (:func:`mpanet_tf.inference.embedding_function`, built once at load time); both
  on images resized by the evaluation path (facts §1.5: the BN-neck output, no flip, no L2
  normalisation);
- an exported SavedModel folder (``saved_model.pb``, or TF Serving's layout with version
  sub-folders, the highest taken): its ``serve_encoded`` signature, which decodes and resizes the
  file bytes itself, so the embedder ``wants_bytes`` and
  :func:`~mpanet_tf.eval.features.extract_features` hands it the encoded files; mpanet_tf's Keras
  model is not needed;
- an ``.onnx`` file (or an export folder holding only ``onnx/<v>/model.onnx``): ONNX Runtime on
  images resized by the evaluation path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mpanet_tf.errors import CheckpointError


@dataclass
class Embedder:
    """An embedding function for image batches with what feeds it.

    Attributes:
        embed: (N, H, W, 3) float32 in [0, 255] at ``image_size`` -> (N, D) float32, or, when
            ``embed.wants_bytes`` is True, encoded file bytes (N,) -> (N, D).
        image_size: (H, W) the model expects (None for a SavedModel without export info: it
            resizes inside).
        kind: ``"keras"``, ``"savedmodel"`` or ``"onnx"``.
        source: the file or folder it was loaded from (None for an in-memory model).

    Call: ``embedder(batch)`` -> float32 numpy (N, D).
    """

    embed: Callable
    image_size: tuple[int, int] | None
    kind: str = "keras"
    source: Path | None = None

    @property
    def wants_bytes(self) -> bool:
        return bool(getattr(self.embed, "wants_bytes", False))

    def __call__(self, batch) -> np.ndarray:
        return np.asarray(self.embed(batch), dtype=np.float32)


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


def load_embedder(model) -> Embedder:
    """Open an MPANet instance, run folder, ``.keras`` file, SavedModel folder or ``.onnx`` file.

    Raises:
        CheckpointError: nothing loadable at the path (one line naming it).
    """
    if isinstance(model, Embedder):
        return model
    if hasattr(model, "embed") and hasattr(model, "image_size"):
        return Embedder(model.embed, tuple(model.image_size), "keras", None)
    from mpanet_tf.export import find_savedmodel

    path = Path(model)
    if path.is_file() and path.suffix.lower() == ".onnx":
        return _onnx_embedder(path)
    savedmodel = find_savedmodel(path)
    if savedmodel is not None:
        return _savedmodel_embedder(savedmodel)
    if path.is_dir() and not (path / "config.json").is_file():
        onnx = _latest_onnx(path)
        if onnx is not None:
            return _onnx_embedder(onnx)
    from mpanet_tf.inference import embedding_function
    from mpanet_tf.model import load_model

    loaded = load_model(path)
    # a loaded artifact's weights never change: embed through the BN-folded graph (same numbers up
    # to float rounding, ~8% less CPU time, benchmarks/RESULTS_inference.md)
    return Embedder(embedding_function(loaded), loaded.image_size, "keras", path)
