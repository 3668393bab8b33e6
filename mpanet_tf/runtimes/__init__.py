"""Model runtimes: one module per kind of artifact, each registered in :mod:`.registry`.

Built in: :mod:`.savedmodel` (TF Serving), :mod:`.onnx` (float32 ONNX), :mod:`.quantized`
(int8 ONNX, QDQ) and :mod:`.keras_model` (run folder / ``.keras`` file, the fallback). A new
runtime is one module defining a :class:`Runtime` subclass and calling :func:`register`; import
it before use (the built-ins are imported here).
"""

from mpanet_tf.runtimes.registry import (
    ExportOptions,
    Runtime,
    find_runtime,
    format_names,
    get_runtime,
    quantized_names,
    register,
    resolve_formats,
    runtimes,
    unregister,
)
from mpanet_tf.runtimes import keras_model, onnx, quantized, savedmodel  # noqa: E402,F401  (registration)

__all__ = ["ExportOptions", "Runtime", "find_runtime", "format_names", "get_runtime", "quantized_names",
           "register", "resolve_formats", "runtimes", "unregister"]
