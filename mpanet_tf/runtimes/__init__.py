"""Model runtimes: one module per kind of artifact, each registered in :mod:`.registry`.

Built in: :mod:`.savedmodel` (TF Serving), :mod:`.onnx` (float32 ONNX), :mod:`.quantized`
(int8 ONNX, QDQ) and :mod:`.keras_model` (run folder / ``.keras`` file, the fallback), on the
base modules :mod:`.registry` (the :class:`Runtime` interface), :mod:`.embedder` (what a loaded
artifact is) and :mod:`.export_info` (the ``mpanet_export.json`` beside an export). A new runtime
is one module defining a :class:`Runtime` subclass (with its own export options) and calling
:func:`register`; importing it registers it: the built-ins are imported here, third-party ones
through the entry-point group ``mpanet_tf.runtimes`` or ``MPANET_TF_RUNTIMES``.
"""

from mpanet_tf.runtimes.registry import (
    ExportOptions,
    Runtime,
    export_options,
    find_runtime,
    format_names,
    get_runtime,
    quantized_names,
    register,
    registry_version,
    resolve_formats,
    runtimes,
    unregister,
)
from mpanet_tf.runtimes import keras_model, onnx, quantized, savedmodel  # noqa: E402,F401  (registration)

__all__ = ["ExportOptions", "Runtime", "export_options", "find_runtime", "format_names", "get_runtime",
           "quantized_names", "register", "registry_version", "resolve_formats", "runtimes", "unregister"]
