"""Any model artifact of the project behind one embedding callable (evaluation, search, pictures).

The base of the runtimes package: every runtime's ``load`` returns an :class:`Embedder`.
:func:`load_embedder` opens an in-memory :class:`~mpanet_tf.model.MPANet` (``model.embed``) or a
path through the runtime registry (:mod:`mpanet_tf.runtimes.registry`): a run folder or ``.keras`` file
(the BN-folded inference graph), an exported SavedModel (its ``serve_encoded`` signature on the
encoded files: the embedder ``wants_bytes``), an ONNX file or its export folder, an int8 export.
Every embedder but the SavedModel's takes images resized by the evaluation path (design.md §1.5: the
BN-neck output, no flip, no L2 normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mpanet_tf.runtimes.registry import find_runtime


@dataclass
class Embedder:
    """An embedding function for image batches with what feeds it.

    Attributes:
        embed: (N, H, W, 3) float32 in [0, 255] at ``image_size`` -> (N, D) float32, or, when
            ``embed.wants_bytes`` is True, encoded file bytes (N,) -> (N, D).
        image_size: (H, W) the model expects (None for a SavedModel without export info: it
            resizes inside).
        kind: the name of the runtime that loaded it (``"keras"``, ``"savedmodel"``, ``"onnx"``,
            ``"int8"``, ...).
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


def load_embedder(model) -> Embedder:
    """Open an MPANet instance or any artifact a registered runtime recognises (run folder,
    ``.keras`` file, SavedModel folder, ``.onnx`` file, int8 export, ...).

    A path is opened by the first runtime of :func:`mpanet_tf.runtimes.registry.runtimes` whose ``find``
    recognises it, else by the Keras run-folder runtime, whose loading names what is missing.

    Raises:
        CheckpointError: nothing loadable at the path (one line naming it).
    """
    if isinstance(model, Embedder):
        return model
    if hasattr(model, "embed") and hasattr(model, "image_size"):
        return Embedder(model.embed, tuple(model.image_size), "keras", None)
    runtime, artifact = find_runtime(Path(model))
    return runtime.load(artifact)
