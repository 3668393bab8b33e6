"""The model fingerprint: which model artifact made a gallery index.

``fingerprint = "sha256:" + SHA-256`` over one line per file of the artifact, in sorted order::

    <path relative to the artifact, '' for a single file> NUL <size in bytes> NUL <SHA-256 of the bytes> LF

The files of an artifact are the ones its loader reads
(:func:`mpanet_tf.runtimes.embedder.load_embedder`):

- a single file (``.keras``, ``.onnx``, or any other one-file model): that file;
- a run folder (holds ``config.json``): ``config.json``, ``model.keras`` and the newest complete
  checkpoint's ``.weights.h5``, those that exist;
- any other folder (an exported SavedModel version ``saved_models/NAME/<v>``, ...): every regular,
  non-hidden file under it.

The fingerprint depends only on the bytes (and the relative names inside a folder), so it is the
same wherever the artifact is copied or moved, and changes when training continues or the model
is re-exported. The same weights in two formats (a run folder and its ONNX export) are two
artifacts with two fingerprints: their embeddings agree only up to float rounding, and an index
answers to exactly one of them. A model held in memory (the Python API) is fingerprinted over
its weight arrays instead (``"sha256-weights:"``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mpanet_tf import run_folder

_BLOCK = 2**20


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(path) -> list[tuple[str, Path]]:
    """(relative name, file) of every file that makes up the artifact at ``path`` (module docstring)."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if path.is_file():
        return [("", path)]
    if run_folder.is_run_folder(path):
        files = [path / run_folder.CONFIG_FILE, path / run_folder.FINAL_MODEL]
        latest = run_folder.latest_checkpoint(path)
        if latest is not None:
            files.append(latest[0])
        return [(f.relative_to(path).as_posix(), f) for f in files if f.is_file()]
    if path.is_dir():
        return sorted((f.relative_to(path).as_posix(), f) for f in path.rglob("*")
                      if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts))
    return []


def _weights_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        value = weight.numpy() if hasattr(weight, "numpy") else weight
        digest.update(f"{weight.path}\0{value.dtype}\0{value.shape}\n".encode())
        digest.update(value.tobytes())
    return "sha256-weights:" + digest.hexdigest()


def model_fingerprint(model) -> str:
    """The fingerprint of a model artifact path, an :class:`~mpanet_tf.runtimes.embedder.Embedder`
    (of its ``source``) or an in-memory Keras model.

    Raises:
        ValueError: an Embedder without a source whose model cannot be reached.
    """
    if hasattr(model, "weights") and hasattr(model, "embed"):
        return _weights_fingerprint(model)
    if hasattr(model, "embed") and hasattr(model, "source"):  # an Embedder
        if model.source is None:
            owner = getattr(model.embed, "__self__", None)
            if owner is None or not hasattr(owner, "weights"):
                raise ValueError("cannot fingerprint an in-memory embedder without its model")
            return _weights_fingerprint(owner)
        model = model.source
    digest = hashlib.sha256()
    for name, file in artifact_files(model):
        digest.update(f"{name}\0{file.stat().st_size}\0{_file_digest(file)}\n".encode())
    return "sha256:" + digest.hexdigest()
