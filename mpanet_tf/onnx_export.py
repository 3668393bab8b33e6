"""ONNX export of the MPANet embedding (tf2onnx 1.17), and an ONNX Runtime embedder.

The ONNX graph is the model's forward pass at its fixed input size:

- input ``images``: float32 (N, H, W, 3) RGB in [0, 255], **already resized** to the model's size
  (H x W = ``model.image_size``, e.g. 384 x 128 for SYSU) with
  :func:`mpanet_tf.data.images.load_image` or PIL's ``Image.open(p).convert("RGB").resize((w, h),
  Image.BILINEAR)``, which give the same pixels. The ImageNet
  normalisation is inside the graph.
- output ``embeddings``: float32 (N, D), D = 14336 with PAM: the BN-neck feature (facts §1.5),
  not L2-normalised.

Why no uint8 any-size input as in the SavedModel: the SavedModel's resize (PIL's bilinear filter
built from the dynamic input size with TensorFlow control flow) is not part of the ONNX graph, and
decoding files has no ONNX op. Opset
17 (:data:`DEFAULT_OPSET`) is used; ONNX Runtime >= 1.14 runs it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def input_description(model) -> str:
    height, width = model.image_size
    return (f"{INPUT_NAME}: float32 (N, {height}, {width}, 3) RGB in [0, 255], already resized to "
            f"{height}x{width} (PIL's bilinear resize, aspect ratio ignored)")


def embedding_function(model):
    """A tf.function images float32 (N, H, W, 3) at the model size -> {"embeddings": (N, D)}, through
    the BN-folded graph (:func:`mpanet_tf.inference.fold_batch_norms`, as the SavedModel and the
    evaluation of a run folder)."""
    import tensorflow as tf

    from mpanet_tf.inference import fold_batch_norms

    height, width = (int(s) for s in model.image_size)
    network = fold_batch_norms(model)

    @tf.function(input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32, name=INPUT_NAME)],
                 autograph=False)
    def embed(images):
        return {OUTPUT_NAME: tf.cast(network(images, training=False), tf.float32)}

    return embed


@contextmanager
def _environment(name: str, value: str):
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def write_onnx(model, path, opset: int = DEFAULT_OPSET) -> None:
    """Convert the embedding of ``model`` to ONNX and write it to ``path``.

    tf2onnx normally deep-copies the whole graph (weights included) before each of its ~12
    optimizer passes so that a failing pass can be rolled back; for a ResNet-50 that copying is
    ~40% of the conversion time. The first attempt runs the passes unguarded
    (``TF2ONNX_CATCH_ERRORS=FALSE``); if it fails, the conversion is repeated with tf2onnx's
    default guarded passes.

    Raises whatever tf2onnx raises; :func:`mpanet_tf.export.export_model` turns it into an
    :class:`~mpanet_tf.errors.ExportError`.
    """
    import tf2onnx

    function = embedding_function(model)

    def convert():
        tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=int(opset),
                                      output_path=os.fspath(path))

    try:
        with _environment("TF2ONNX_CATCH_ERRORS", "FALSE"):
            convert()
    except Exception:  # an optimizer pass failed unguarded: retry the slow, guarded way
        convert()


def onnx_session(path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path`` (``threads`` intra-op threads, default: ORT's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])


def session_image_size(session) -> tuple[int, int]:
    """(H, W) of the ``images`` input of an exported MPANet ONNX session."""
    shape = session.get_inputs()[0].shape
    return int(shape[1]), int(shape[2])


def onnx_embedder(session):
    """``embed(images (N, H, W, 3) float32 in [0, 255]) -> (N, D) float32`` through ONNX Runtime."""

    def embed(images):
        batch = np.asarray(images, dtype=np.float32)
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    return embed
