"""The export info file: ``mpanet_export.json`` beside every exported artifact.

Written by ``mpanet-tf export`` (:func:`mpanet_tf.export.export_model`) into each artifact's
folder, read by the runtimes that open it (the SavedModel's input size, the ONNX file's format
label). Fields: ``format`` (the runtime's name), ``version`` (the TF Serving version number),
``source`` (the exported run folder or ``.keras`` file, or null), ``image_height`` and
``image_width`` (the model's input size), ``embedding_dim`` (D), ``output`` (what the artifact
returns), ``mpanet_tf_version``, ``created_utc``, and the fields the runtime's ``write`` adds
(e.g. ``opset``, ``signatures``, ``quantization``).
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from mpanet_tf import __version__

EXPORT_INFO = "mpanet_export.json"


def export_info(model, source, fmt: str, version: int, **extra) -> dict:
    """The export info of ``model`` (an MPANet: ``image_size`` (H, W), ``embedding_dim`` D)
    exported as runtime ``fmt``, version ``version``, from ``source``; ``extra`` fields last."""
    height, width = model.image_size
    return {
        "format": fmt,
        "version": int(version),
        "source": os.fspath(source) if source is not None else None,
        "image_height": int(height),
        "image_width": int(width),
        "embedding_dim": int(model.embedding_dim),
        "output": f"embeddings: float32 (N, {model.embedding_dim}), BN-neck features, not L2-normalised",
        "mpanet_tf_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


def write_export_info(folder, info: dict) -> None:
    """Write ``info`` as ``folder/mpanet_export.json`` (``folder`` is an export's staging folder,
    renamed into place whole, so the file needs no atomic write of its own)."""
    with open(Path(folder) / EXPORT_INFO, "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_export_info(folder) -> dict:
    """The ``mpanet_export.json`` of an exported folder, or {} when there is none."""
    info = Path(folder) / EXPORT_INFO
    if not info.is_file():
        return {}
    with open(info, encoding="utf-8") as handle:
        return json.load(handle)
