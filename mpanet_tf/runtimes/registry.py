"""The runtime registry: one :class:`Runtime` per kind of model artifact.

A runtime knows how to write its artifact from a model (``mpanet-tf export``), how to recognise a
path that holds one, and how to open it as an :class:`~mpanet_tf.runtimes.embedder.Embedder`
(evaluation, search, pictures). ``export --format`` / ``--quantize``, ``load_embedder``,
``search``, ``eval --model`` and the benchmarks loop over :func:`runtimes`; adding a runtime is one
module with a :class:`Runtime` subclass and a :func:`register` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mpanet_tf.errors import ExportError


@dataclass(frozen=True)
class ExportOptions:
    """What ``mpanet-tf export`` passes to every writer; each runtime reads the fields it needs.

    Attributes:
        version: the TF Serving version number of this export.
        opset: ONNX opset (None: the ONNX runtime's default).
        calibration: folder of images (or a dataset root) that calibrates a quantised model.
        calibration_images: how many of its images are used.
    """

    version: int = 1
    opset: int | None = None
    calibration: str | None = None
    calibration_images: int | None = None


class Runtime:
    """One kind of model artifact.

    Class attributes:
        name: the ``--format`` (or ``--quantize``) value, ``Embedder.kind`` and the export info's
            ``format``.
        label: the name in messages ("ONNX").
        help: one line for ``export --help``.
        exportable: ``export`` can write it (``write`` and ``target`` are implemented).
        quantized: requested with ``export --quantize NAME`` instead of ``--format`` (and not part
            of ``--format all``).
        priority: recognition order in :func:`find_runtime`, lowest first; the Keras run-folder
            runtime, the fallback, comes last.
    """

    name: str = ""
    label: str = ""
    help: str = ""
    exportable: bool = True
    quantized: bool = False
    priority: int = 50

    # ----------------------------------------------------------------- writing
    def target(self, output: Path, version: int) -> Path:
        """The folder an export under ``output`` writes (staged, then renamed into place)."""
        raise NotImplementedError(f"runtime {self.name} cannot be exported")

    def artifact(self, target: Path) -> Path:
        """The path reported to the user for a written ``target`` (a file inside it, or itself)."""
        return target

    def write(self, model, folder: Path, options: ExportOptions) -> dict:
        """Write the artifact of ``model`` (an MPANet) into the empty staging ``folder``.

        Returns:
            extra fields for the folder's ``mpanet_export.json``.
        """
        raise NotImplementedError(f"runtime {self.name} cannot be exported")

    def check_options(self, options: ExportOptions) -> None:
        """Raise :class:`ExportError` (one line) when ``options`` lack what ``write`` needs, before
        anything is written."""

    # ----------------------------------------------------------------- reading
    def find(self, path: Path) -> Path | None:
        """The artifact of this kind at ``path`` (``path`` itself or what it holds), or None."""
        raise NotImplementedError

    def load(self, path: Path):
        """The :class:`~mpanet_tf.runtimes.embedder.Embedder` of the artifact ``find`` returned."""
        raise NotImplementedError


_RUNTIMES: dict[str, Runtime] = {}


def register(runtime: Runtime) -> Runtime:
    """Add ``runtime`` (an instance) to the registry; re-registering a name replaces it."""
    if not runtime.name or runtime.name == "all":
        raise ValueError(f"a runtime needs a name other than 'all', got {runtime.name!r}")
    _RUNTIMES[runtime.name] = runtime
    return runtime


def unregister(name: str) -> None:
    _RUNTIMES.pop(name, None)


def runtimes() -> list[Runtime]:
    """Every registered runtime, in recognition order."""
    return sorted(_RUNTIMES.values(), key=lambda runtime: runtime.priority)


def get_runtime(name: str) -> Runtime:
    try:
        return _RUNTIMES[name]
    except KeyError:
        raise ExportError(f"unknown export format {name!r}; use one of "
                          f"{', '.join([*format_names(), 'all'])}") from None


def format_names() -> list[str]:
    """``export --format`` choices (without "all"), in :func:`runtimes` order."""
    return [r.name for r in runtimes() if r.exportable and not r.quantized]


def quantized_names() -> list[str]:
    """``export --quantize`` choices."""
    return [r.name for r in runtimes() if r.exportable and r.quantized]


def resolve_formats(formats) -> list[Runtime]:
    """Runtimes for export format names ("all" = every ``--format`` runtime), without repeats."""
    if isinstance(formats, str):
        formats = (formats,)
    resolved = []
    for fmt in formats:
        for name in (format_names() if fmt == "all" else (fmt,)):
            runtime = get_runtime(name)
            if not runtime.exportable:
                raise ExportError(f"runtime {name!r} cannot be exported; use one of "
                                  f"{', '.join([*format_names(), 'all'])}")
            if runtime not in resolved:
                resolved.append(runtime)
    if not resolved:
        raise ExportError(f"no export format given; use {', '.join(format_names())} or all")
    return resolved


def find_runtime(path) -> tuple[Runtime, Path]:
    """(the runtime, the artifact) for a model path: the first runtime, in :func:`runtimes`
    order, that recognises it; the Keras run-folder runtime otherwise (whose loading names what is
    missing)."""
    path = Path(path)
    for runtime in runtimes():
        found = runtime.find(path)
        if found is not None:
            return runtime, found
    return _RUNTIMES["keras"], path
