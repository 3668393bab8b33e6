"""The runtime registry: one :class:`Runtime` per kind of model artifact.

A runtime knows how to write its artifact from a model (``mpanet-tf export``, with the export
options it declares), how to recognise a path that holds one, which files make it up, and how to
open it as an :class:`~mpanet_tf.runtimes.embedder.Embedder` (evaluation, search, pictures).
``export --format`` / ``--quantize``, ``load_embedder``, ``search``, ``eval --model``, the index's
model fingerprint and the benchmarks loop over :func:`runtimes`; adding a runtime is one module
with a :class:`Runtime` subclass and a :func:`register` call, imported before use: by
:mod:`mpanet_tf.runtimes` (the built-ins), by an entry point of the group
:data:`ENTRY_POINT_GROUP` of an installed package, or through the ``MPANET_TF_RUNTIMES``
environment variable (comma-separated module names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mpanet_tf.cli_option import CliOption, merge_options
from mpanet_tf.errors import ExportError
from mpanet_tf.plugins import import_plugins

#: Entry-point group of third-party runtime modules (each entry point names a module to import).
ENTRY_POINT_GROUP = "mpanet_tf.runtimes"
#: Environment variable naming more runtime modules, comma-separated.
ENVIRONMENT_VARIABLE = "MPANET_TF_RUNTIMES"


@dataclass(frozen=True)
class ExportOptions:
    """What ``mpanet-tf export`` passes to every writer.

    Attributes:
        version: the TF Serving version number of this export.
        values: the value of every export option the registered runtimes declare
            (:attr:`Runtime.cli_options`), by ``dest``; the declared default when not given.

    ``options["opset"]`` reads one value (None for an option no runtime declares).
    """

    version: int = 1
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, dest: str):
        return self.values.get(dest)


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
        cli_options: the ``mpanet-tf export`` options its ``write`` reads
            (:class:`~mpanet_tf.cli_option.CliOption`; default None, so that an option given is
            one not None). Runtimes may share an option by declaring equal objects.
    """

    name: str = ""
    label: str = ""
    help: str = ""
    exportable: bool = True
    quantized: bool = False
    priority: int = 50
    cli_options: tuple[CliOption, ...] = ()

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

    def how_to_ask(self) -> str:
        """The export flag that selects this runtime (``--format onnx``, ``--quantize int8``)."""
        return f"--{'quantize' if self.quantized else 'format'} {self.name}"

    # ----------------------------------------------------------------- reading
    def find(self, path: Path) -> Path | None:
        """The artifact of this kind at ``path`` (``path`` itself or what it holds), or None."""
        raise NotImplementedError

    def load(self, path: Path):
        """The :class:`~mpanet_tf.runtimes.embedder.Embedder` of the artifact ``find`` returned."""
        raise NotImplementedError


_RUNTIMES: dict[str, Runtime] = {}
_VERSION = [0]
_PLUGINS_LOADED = [False]


def register(runtime: Runtime) -> Runtime:
    """Add ``runtime`` (an instance) to the registry; re-registering a name replaces it."""
    if not runtime.name or runtime.name == "all":
        raise ValueError(f"a runtime needs a name other than 'all', got {runtime.name!r}")
    _RUNTIMES[runtime.name] = runtime
    _VERSION[0] += 1
    return runtime


def unregister(name: str) -> None:
    if _RUNTIMES.pop(name, None) is not None:
        _VERSION[0] += 1


def load_plugin_runtimes() -> None:
    """Import the runtime modules of :data:`ENTRY_POINT_GROUP` and ``MPANET_TF_RUNTIMES``, once."""
    if not _PLUGINS_LOADED[0]:
        _PLUGINS_LOADED[0] = True
        import_plugins(ENTRY_POINT_GROUP, ENVIRONMENT_VARIABLE)


def registry_version() -> int:
    """A number that changes whenever a runtime is registered or removed."""
    load_plugin_runtimes()
    return _VERSION[0]


def runtimes() -> list[Runtime]:
    """Every registered runtime, in recognition order."""
    load_plugin_runtimes()
    return sorted(_RUNTIMES.values(), key=lambda runtime: runtime.priority)


def export_options() -> list[CliOption]:
    """The export options the exportable runtimes declare, in :func:`runtimes` order, each once.

    Raises:
        ConfigError: two runtimes declare different options under one ``dest``.
    """
    return merge_options(((r.name, r.cli_options) for r in runtimes() if r.exportable), "runtimes")


def resolve_options(chosen: list[Runtime], version: int, given: Mapping[str, Any]) -> ExportOptions:
    """The :class:`ExportOptions` of an export with the runtimes ``chosen`` and the option values
    ``given`` (by ``dest``; None = not given).

    Raises:
        ExportError: an option no runtime declares, or one given although none of ``chosen``
            declares it (one line naming the flag that would select a runtime reading it).
    """
    declared = {option.dest: option for option in export_options()}
    for dest, value in given.items():
        if dest not in declared:
            raise ExportError(f"unknown export option {dest!r}; the runtimes declare "
                              f"{', '.join(sorted(declared)) or 'none'}")
        option = declared[dest]
        if value is None or value == option.default or any(option in r.cli_options for r in chosen):
            continue
        flag = option.flags[0].split("/")[0]
        readers = [r.how_to_ask() for r in runtimes() if r.exportable and option in r.cli_options]
        raise ExportError(f"{flag} only applies with {' or '.join(readers)}; add it or drop {flag}")
    values = {dest: option.default for dest, option in declared.items()}
    values.update({dest: value for dest, value in given.items() if value is not None})
    return ExportOptions(version=int(version), values=values)


def get_runtime(name: str) -> Runtime:
    load_plugin_runtimes()
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
