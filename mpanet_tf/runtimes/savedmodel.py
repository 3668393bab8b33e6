"""The SavedModel runtime: TF Serving's layout, two signatures, loadable without mpanet_tf.

Layout: ``OUTPUT/<version>/`` (``saved_model.pb``, ``variables/``, ``fingerprint.pb``,
``mpanet_export.json``). TF Serving loads the all-digit sub-folders of ``model_base_path`` and
serves the highest one, so the other runtimes' folders next to the versions are ignored by it.

Signatures (both return ``embeddings`` float32 (N, D), D = 14336 with PAM: the BN-neck output in
inference mode, not L2-normalised, design.md §1.5):

- ``serving_default``: ``images`` uint8 (N, H, W, 3) RGB of any H and W, resized to the model's
  input size with :func:`mpanet_tf.data.images.resize_image_tensor` (bilinear, antialiased,
  ignoring the aspect ratio), exactly as evaluation does.
- ``serve_encoded``: ``image_bytes`` string (N,), JPEG/PNG/BMP/GIF file contents, decoded with
  :func:`mpanet_tf.data.images.decode_image_tensor` (3 channels) and resized the same way.

Only the weights the embedding reads are saved, once each (see :func:`build_export_archive`): the
BN-folded backbone (:mod:`mpanet_tf.inference`) with its MAMs, PAM and the BN neck; the
classifiers are training-only and are left out. Loading (``tf.saved_model.load``) needs only
TensorFlow. As an embedder, the ``serve_encoded`` signature is fed the encoded files
(``wants_bytes``), so decoding and resizing happen inside the SavedModel.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpanet_tf.data.images import decode_image_tensor, resize_image_tensor
from mpanet_tf.errors import CheckpointError
from mpanet_tf.runtimes.embedder import Embedder
from mpanet_tf.runtimes.export_info import read_export_info
from mpanet_tf.runtimes.registry import ExportOptions, Runtime, register

EMBEDDINGS = "embeddings"
SIGNATURES = {
    "serving_default": ("images", "uint8 (N, H, W, 3), any H and W"),
    "serve_encoded": ("image_bytes", "string (N,), JPEG/PNG/BMP/GIF file bytes"),
}


def savedmodel_dir(output, version: int = 1) -> Path:
    """``output/<version>``: the SavedModel folder TF Serving loads for ``version``."""
    return Path(output) / str(int(version))


def find_savedmodel(path) -> Path | None:
    """The SavedModel folder at ``path``: ``path`` itself when it holds ``saved_model.pb``, else
    its highest all-digit version sub-folder that does (as TF Serving picks), else None."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if not path.is_dir():
        return None
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def serving_functions(model):
    """The two serving functions of the SavedModel (not yet traced).

    Both run :func:`mpanet_tf.inference.embedding_function` of ``model`` (the BN-folded graph, a
    snapshot of its weights), the embedding the evaluation of a run folder uses too.

    Returns:
        dict name -> (fn, input_signature) with ``serving_default``: images uint8 (N, H, W, 3) ->
        {"embeddings": (N, D) float32} and ``serve_encoded``: image_bytes string (N,) -> the same.
    """
    import tensorflow as tf

    from mpanet_tf.inference import embedding_function  # deferred: TensorFlow; the CLI lists runtimes without it

    size = tuple(int(s) for s in model.image_size)
    embedding = embedding_function(model)

    def serve_images(images):
        return {EMBEDDINGS: embedding.tensor(resize_image_tensor(images, size))}

    def serve_encoded(image_bytes):
        resized = tf.map_fn(
            lambda data: resize_image_tensor(decode_image_tensor(data), size),
            image_bytes,
            fn_output_signature=tf.TensorSpec((*size, 3), tf.float32),
        )
        return {EMBEDDINGS: embedding.tensor(resized)}

    return {
        "serving_default": (serve_images, [tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")]),
        "serve_encoded": (serve_encoded, [tf.TensorSpec((None,), tf.string, name="image_bytes")]),
    }


def build_export_archive(model):
    """A :class:`keras.export.ExportArchive` with both endpoints.

    ``archive.track(model)`` is deliberately not called: the endpoints' traced functions already
    capture (and the archive saves) exactly the variables they read, while ``track()`` adds the
    Keras wrappers of the same variables as separate objects, which Keras 3.15 writes a second
    time (keras-team/keras#23553: twice the file size, and twice the variable memory in TF
    Serving). Without it, the SavedModel holds the embedding's weights once and no classifier.
    """
    import keras

    archive = keras.export.ExportArchive()
    for name, (fn, signature) in serving_functions(model).items():
        archive.add_endpoint(name, fn, input_signature=signature)
    return archive


def write_savedmodel(model, folder) -> None:
    """Write the SavedModel of ``model`` to ``folder`` (which must not exist yet)."""
    build_export_archive(model).write_out(os.fspath(folder), verbose=False)


class SavedModelRuntime(Runtime):
    name = "savedmodel"
    label = "SavedModel"
    help = ("TF Serving SavedModel in OUTPUT/<version>/ (signatures serving_default and "
            "serve_encoded)")
    priority = 10

    def target(self, output: Path, version: int) -> Path:
        return savedmodel_dir(output, version)

    def write(self, model, folder: Path, options: ExportOptions) -> dict:
        write_savedmodel(model, folder)
        return {"signatures": {k: f"{v[0]}: {v[1]}" for k, v in SIGNATURES.items()}}

    def find(self, path: Path) -> Path | None:
        return find_savedmodel(path)

    def load(self, path: Path):
        import tensorflow as tf

        loaded = tf.saved_model.load(os.fspath(path))
        if "serve_encoded" not in loaded.signatures:
            raise CheckpointError(f"SavedModel {path} has no serve_encoded signature; re-export it with "
                                  "`mpanet-tf export --format savedmodel`")
        signature = loaded.signatures["serve_encoded"]

        def embed(image_bytes):
            return signature(image_bytes=tf.constant(image_bytes, dtype=tf.string))[EMBEDDINGS].numpy()

        embed.wants_bytes = True
        embed.loaded = loaded  # keep the SavedModel's resources alive with the function
        info = read_export_info(path)
        size = (info["image_height"], info["image_width"]) if "image_height" in info else None
        return Embedder(embed, size, self.name, path)


register(SavedModelRuntime())
