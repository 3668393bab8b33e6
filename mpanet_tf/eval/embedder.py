"""The embedding function evaluation runs: any model artifact of the project behind one callable.

:func:`load_embedder` opens

- a run folder or a ``.keras`` file: :func:`mpanet_tf.load_model`, then ``model.embed`` on images
  resized by the evaluation path (facts §1.5: the BN-neck output, no flip, no normalisation);
- an exported SavedModel folder (``saved_model.pb``, or TF Serving's layout with version
  sub-folders, the highest taken): its ``serve_encoded`` signature, which decodes and resizes the
  file bytes itself, so the embedder says ``wants_bytes`` and
  :func:`~mpanet_tf.eval.features.extract_features` hands it the encoded files;
- an ``.onnx`` file: ONNX Runtime on resized images.

The artifact detection lives in :func:`mpanet_tf.search.open_embedder` (shared with
``mpanet-tf search``); this module gives evaluation its callable view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Embedder:
    """A callable embedding function with the input it needs.

    Attributes:
        image_size: (H, W) the model takes; None for a SavedModel without export info (it resizes
            inside, so the size is not needed).
        wants_bytes: True when the embedder takes encoded file bytes (N,) instead of images.
        kind: ``"keras"``, ``"savedmodel"`` or ``"onnx"``.
        source: the file or folder it was loaded from.

    Call: ``embedder(batch)`` with float32 (N, H, W, 3) in [0, 255] (or bytes (N,) when
    ``wants_bytes``) -> float32 (N, D).
    """

    def __init__(self, embed_fn, image_size, kind: str = "keras", source=None):
        self._embed = embed_fn
        self.image_size = tuple(int(s) for s in image_size) if image_size is not None else None
        self.wants_bytes = bool(getattr(embed_fn, "wants_bytes", False))
        self.kind = kind
        self.source = Path(source) if source is not None else None

    def __call__(self, batch) -> np.ndarray:
        return np.asarray(self._embed(batch), dtype=np.float32)

    def __repr__(self) -> str:
        return f"Embedder(kind={self.kind!r}, source={str(self.source)!r}, image_size={self.image_size})"


def load_embedder(path) -> Embedder:
    """Open a run folder, ``.keras`` file, SavedModel folder or ``.onnx`` file as an :class:`Embedder`.

    Raises:
        CheckpointError: nothing loadable at ``path`` (one line naming it).
    """
    from mpanet_tf.search import open_embedder

    opened = open_embedder(path)
    return Embedder(opened.embed, opened.image_size, opened.kind, opened.source)
