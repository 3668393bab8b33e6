"""Deployment artifacts: a TF Serving SavedModel with two signatures, and an ONNX file.

Layout written by :func:`export_model` (``mpanet-tf export``)::

    saved_models/NAME/
      1/                        SavedModel, version 1 (TF Serving's model_base_path layout)
        saved_model.pb  variables/  fingerprint.pb
        mpanet_export.json      what was exported (input size, embedding size, signatures)
      2/ ...                    further versions (--version N)
      onnx/
        1/model.onnx            ONNX export of version 1, with its mpanet_export.json
        2/model.onnx ...

TF Serving only loads the all-digit sub-folders of ``model_base_path``, so the ``onnx/`` folder,
the hidden staging folders (``.<version>.staging-*``) next to the versions and the lock file
``.mpanet-lock`` (held while an export writes the folder) are ignored by the server.

SavedModel signatures (both return ``embeddings`` float32 (N, D), D = 14336 with PAM: the BN-neck
output in inference mode, not L2-normalised, facts §1.5):

- ``serving_default``: ``images`` uint8 (N, H, W, 3) RGB of any H and W, resized to the model's
  input size with :func:`mpanet_tf.data.images.resize_image_tensor` (PIL's bilinear resize, bit
  for bit, ignoring the aspect ratio), exactly as evaluation does.
- ``serve_encoded``: ``image_bytes`` string (N,), JPEG/PNG/BMP/GIF file contents, decoded with
  :func:`mpanet_tf.data.images.decode_image_tensor` (3 channels) and resized the same way.

Only the weights the embedding reads are saved, once each (see :func:`build_export_archive`): the
BN-folded backbone (:mod:`mpanet_tf.inference`: conv kernels and biases) with its MAMs, PAM and the
BN neck; the classifiers are training-only and are left out. The SavedModel needs only TensorFlow to load
(``tf.saved_model.load``), not mpanet_tf or Keras.

Every export is written into a staging folder next to its target and renamed into place at the
end (:func:`mpanet_tf.run_folder.staging_folder`); any failure removes the staging folder, so no
partial export is ever left behind, and the next export removes those of a killed one.
"""

from __future__ import annotations

import datetime
import json
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path

from mpanet_tf import run_folder
from mpanet_tf.errors import ExportError

FORMATS = ("savedmodel", "onnx")
EXPORT_INFO = "mpanet_export.json"
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
EMBEDDINGS = "embeddings"
SIGNATURES = {
    "serving_default": ("images", "uint8 (N, H, W, 3), any H and W"),
    "serve_encoded": ("image_bytes", "string (N,), JPEG/PNG/BMP/GIF file bytes"),
}


# -------------------------------------------------------------------- layout
def savedmodel_dir(output, version: int = 1) -> Path:
    """``output/<version>``: the SavedModel folder TF Serving loads for ``version``."""
    return Path(output) / str(int(version))


def onnx_path(output, version: int = 1) -> Path:
    """``output/onnx/<version>/model.onnx``."""
    return Path(output) / ONNX_DIR / str(int(version)) / ONNX_FILE


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


def read_export_info(folder) -> dict:
    """The ``mpanet_export.json`` of an exported folder, or {} when there is none."""
    info = Path(folder) / EXPORT_INFO
    if not info.is_file():
        return {}
    with open(info, encoding="utf-8") as handle:
        return json.load(handle)


# ----------------------------------------------------------------- SavedModel
def serving_functions(model):
    """The two serving functions of the SavedModel (not yet traced).

    They run :func:`mpanet_tf.inference.fold_batch_norms` of ``model`` (a snapshot of its weights,
    the backbone BatchNorms folded into the convolutions), the graph the evaluation of an exported
    run folder uses too (:func:`mpanet_tf.eval.embedder.load_embedder`).

    Returns:
        dict name -> (fn, input_signature) with ``serving_default``: images uint8 (N, H, W, 3) ->
        {"embeddings": (N, D) float32} and ``serve_encoded``: image_bytes string (N,) -> the same.
    """
    import tensorflow as tf

    from mpanet_tf.data.images import decode_image_tensor, resize_image_tensor

    from mpanet_tf.inference import fold_batch_norms

    size = tuple(int(s) for s in model.image_size)
    network = fold_batch_norms(model)

    def embed(resized):
        return {EMBEDDINGS: tf.cast(network(resized, training=False), tf.float32)}

    def serve_images(images):
        return embed(resize_image_tensor(images, size))

    def serve_encoded(image_bytes):
        resized = tf.map_fn(
            lambda data: resize_image_tensor(decode_image_tensor(data), size),
            image_bytes,
            fn_output_signature=tf.TensorSpec((*size, 3), tf.float32),
        )
        return embed(resized)

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


# --------------------------------------------------------------- the command
def _info(model, source, fmt: str, version: int, **extra) -> dict:
    from mpanet_tf import __version__

    height, width = model.image_size
    return {
        "format": fmt,
        "version": int(version),
        "source": os.fspath(source) if source is not None else None,
        "image_height": int(height),
        "image_width": int(width),
        "embedding_dim": int(model.embedding_dim),
        "output": f"{EMBEDDINGS}: float32 (N, {model.embedding_dim}), BN-neck features, not L2-normalised",
        "mpanet_tf_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


def _write_info(folder: Path, info: dict) -> None:
    with open(folder / EXPORT_INFO, "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2, sort_keys=True)
        handle.write("\n")


@contextmanager
def staged_folder(target: Path, created: list):
    """Yield an empty staging folder next to ``target``; the caller fills it and moves it into
    place with :func:`_commit` only after every artifact is complete.

    Any exception removes the staging folder and leaves ``target`` as it was. ``created`` collects
    the parent folders this call made, so the caller can remove them when everything fails.
    """
    parent = target.parent
    missing = []
    for folder in [parent, *parent.parents]:
        if folder.exists():
            break
        missing.append(folder)
    parent.mkdir(parents=True, exist_ok=True)
    created.extend(missing)
    with run_folder.staging_folder(target) as staging:
        yield staging


def _commit(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing ``target`` (``--force``) is replaced, and
    restored when the move fails."""
    run_folder.replace_folder(staging, target)


def _check_targets(targets: dict, force: bool) -> None:
    for target in targets.values():
        if target.exists() and not force:
            raise ExportError(f"export target {target} already exists; pass --force to replace it "
                              "or choose another --output/--version")
        if target.exists() and not target.is_dir():
            raise ExportError(f"export target {target} exists and is not a folder; remove it or "
                              "choose another --output")


@run_folder.holding_lock("export folder", argument="output")
def export_model(model, output, formats=("savedmodel",), version: int = 1, force: bool = False,
                 opset: int | None = None, source=None) -> dict[str, Path]:
    """Export ``model`` (an MPANet, or a run folder / ``.keras`` path) under ``output``.

    Args:
        model: MPANet instance or a path accepted by :func:`mpanet_tf.model.load_model`.
        output: the model's base folder, e.g. ``saved_models/NAME``.
        formats: any of ``"savedmodel"``, ``"onnx"`` (``"all"`` means both).
        version: TF Serving version number (a positive int): the SavedModel goes to
            ``output/<version>``, the ONNX file to ``output/onnx/<version>/model.onnx``.
        force: replace existing targets (otherwise they are refused).
        opset: ONNX opset (default :data:`mpanet_tf.onnx_export.DEFAULT_OPSET`).
        source: path recorded in ``mpanet_export.json`` (defaults to ``model`` when it is a path).

    Returns:
        dict format -> the written folder (SavedModel) or file (ONNX).

    Raises:
        ExportError: a target exists without ``force``, a bad format/version, or the export failed.
            Nothing is left behind on failure.
    """
    formats = _resolve_formats(formats)
    if int(version) < 1:
        raise ExportError(f"--version must be a positive integer (TF Serving version folder), got {version}")
    output = Path(output)
    targets = {}
    if "savedmodel" in formats:
        targets["savedmodel"] = savedmodel_dir(output, version)
    if "onnx" in formats:
        targets["onnx"] = onnx_path(output, version).parent
    _check_targets(targets, force)

    if not hasattr(model, "embedding_dim"):
        from mpanet_tf.model import load_model

        source = model if source is None else source
        model = load_model(model)

    created: list[Path] = []
    try:
        with ExitStack() as stack:
            staged = {fmt: stack.enter_context(staged_folder(target, created))
                      for fmt, target in targets.items()}
            if "savedmodel" in staged:
                _run_writer("SavedModel", write_savedmodel, model, staged["savedmodel"])
                _write_info(staged["savedmodel"], _info(model, source, "savedmodel", version,
                                                        signatures={k: f"{v[0]}: {v[1]}" for k, v in SIGNATURES.items()}))
            if "onnx" in staged:
                from mpanet_tf import onnx_export

                opset = int(opset or onnx_export.DEFAULT_OPSET)
                _run_writer("ONNX", onnx_export.write_onnx, model, staged["onnx"] / ONNX_FILE, opset)
                _write_info(staged["onnx"], _info(model, source, "onnx", version, opset=opset,
                                                  input=onnx_export.input_description(model)))
            for fmt, target in targets.items():
                _commit(staged[fmt], target)
    except BaseException:
        for folder in sorted(set(created), key=lambda p: len(p.parts), reverse=True):
            # the folders this export made, innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return {fmt: (target / ONNX_FILE if fmt == "onnx" else target) for fmt, target in targets.items()}


def _resolve_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    resolved = []
    for fmt in formats:
        for name in (FORMATS if fmt == "all" else (fmt,)):
            if name not in FORMATS:
                raise ExportError(f"unknown export format {name!r}; use one of savedmodel, onnx, all")
            if name not in resolved:
                resolved.append(name)
    if not resolved:
        raise ExportError("no export format given; use savedmodel, onnx or all")
    return tuple(resolved)


def _run_writer(what: str, writer, *args) -> None:
    """Run one writer; library failures become a one-line :class:`ExportError`."""
    try:
        writer(*args)
    except ExportError:
        raise
    except Exception as error:  # conversion/serialisation failures are reported, not tracebacks
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise ExportError(f"{what} export failed ({type(error).__name__}: {detail}); nothing was "
                          "written. Check the model loads with `mpanet-tf eval`, or report the error") from error
