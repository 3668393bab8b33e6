"""``mpanet-tf export``: write a model's deployment artifacts, one per registered runtime.

Each artifact kind is a :class:`~mpanet_tf.runtimes.registry.Runtime` (:mod:`mpanet_tf.runtimes`):
it names the folder it writes and writes it. Layout of the built-in runtimes::

    saved_models/NAME/
      1/                        SavedModel, version 1 (TF Serving's model_base_path layout)
        saved_model.pb  variables/  fingerprint.pb
        mpanet_export.json      what was exported (input size, embedding size, signatures)
      2/ ...                    further versions (--version N)
      onnx/
        1/model.onnx            ONNX export of version 1, with its mpanet_export.json
      int8/
        1/model.onnx            int8 (QDQ) ONNX of version 1 (--quantize int8)

TF Serving only loads the all-digit sub-folders of ``model_base_path``, so the ``onnx/`` and
``int8/`` folders, the hidden staging folders (``.<version>.staging-*``) next to the versions and
the lock file ``.mpanet-lock`` (held while an export writes the folder) are ignored by the server.
Every artifact returns ``embeddings`` float32 (N, D), D = 14336 with PAM: the BN-neck output in
inference mode (:func:`mpanet_tf.inference.embedding_function`), not L2-normalised (design.md §1.5).
The SavedModel's ``serving_default`` resizes with :func:`mpanet_tf.data.images.resize_image_tensor`
(PIL's bilinear resize, bit for bit) and ``serve_encoded`` decodes with
:func:`mpanet_tf.data.images.decode_image_tensor` first.

Every export is written into a staging folder next to its target and renamed into place at the
end (:func:`mpanet_tf.io.staging.staging_folder`); any failure removes the staging folder, so no
partial export is ever left behind, and the next export removes those of a killed one.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path

from mpanet_tf.errors import ExportError
from mpanet_tf.io import locks
from mpanet_tf.io.staging import replace_folder, staging_folder
from mpanet_tf.model import load_model
from mpanet_tf.runtimes.export_info import export_info, write_export_info
from mpanet_tf.runtimes.registry import resolve_formats, resolve_options


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
    with staging_folder(target) as staging:
        yield staging


def _commit(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``; an existing ``target`` (``--force``) is replaced, and
    restored when the move fails."""
    replace_folder(staging, target)


def _check_targets(targets: dict, force: bool) -> None:
    for target in targets.values():
        if target.exists() and not force:
            raise ExportError(f"export target {target} already exists; pass --force to replace it "
                              "or choose another --output/--version")
        if target.exists() and not target.is_dir():
            raise ExportError(f"export target {target} exists and is not a folder; remove it or "
                              "choose another --output")


@locks.holding_lock("export folder", argument="output")
def export_model(model, output, formats=("savedmodel",), version: int = 1, force: bool = False, source=None,
                 **options) -> dict[str, Path]:
    """Export ``model`` (an MPANet, or a run folder / ``.keras`` path) under ``output``.

    Args:
        model: MPANet instance or a path accepted by :func:`mpanet_tf.model.load_model`.
        output: the model's base folder, e.g. ``saved_models/NAME``.
        formats: names of registered runtimes (:func:`mpanet_tf.runtimes.format_names`:
            ``"savedmodel"``, ``"onnx"``; ``"all"`` means all of those; quantised ones such as
            ``"int8"`` only by name).
        version: TF Serving version number (a positive int): the SavedModel goes to
            ``output/<version>``, the ONNX file to ``output/onnx/<version>/model.onnx``.
        force: replace existing targets (otherwise they are refused).
        source: path recorded in ``mpanet_export.json`` (defaults to ``model`` when it is a path).
        **options: the export options the runtimes declare (:attr:`Runtime.cli_options
            <mpanet_tf.runtimes.registry.Runtime.cli_options>`), by name; None = the runtime's
            default. Built in: ``opset`` (ONNX, int8; default
            :data:`mpanet_tf.runtimes.onnx.DEFAULT_OPSET`), ``calibration`` (int8: a folder of
            images, or a dataset root) and ``calibration_images`` (int8: how many of them).

    Returns:
        dict format -> the written folder (SavedModel) or file (ONNX).

    Raises:
        ExportError: a target exists without ``force``, a bad format/version/option (or an option
            none of ``formats`` reads), or the export failed. Nothing is left behind on failure.
    """
    chosen = resolve_formats(formats)
    if int(version) < 1:
        raise ExportError(f"--version must be a positive integer (TF Serving version folder), got {version}")
    options = resolve_options(chosen, version, options)
    for runtime in chosen:
        runtime.check_options(options)
    output = Path(output)
    targets = {runtime.name: runtime.target(output, version) for runtime in chosen}
    _check_targets(targets, force)

    if not hasattr(model, "embedding_dim"):
        source = model if source is None else source
        model = load_model(model)

    created: list[Path] = []
    try:
        with ExitStack() as stack:
            staged = {name: stack.enter_context(staged_folder(target, created))
                      for name, target in targets.items()}
            for runtime in chosen:
                extra = _run_writer(runtime.label, runtime.write, model, staged[runtime.name], options)
                write_export_info(staged[runtime.name],
                                  export_info(model, source, runtime.name, version, **(extra or {})))
            for name, target in targets.items():
                _commit(staged[name], target)
    except BaseException:
        for folder in sorted(set(created), key=lambda p: len(p.parts), reverse=True):
            # the folders this export made, innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return {runtime.name: runtime.artifact(targets[runtime.name]) for runtime in chosen}


def _run_writer(what: str, writer, *args):
    """Run one writer and return its result; library failures become a one-line
    :class:`ExportError`."""
    try:
        return writer(*args)
    except ExportError:
        raise
    except Exception as error:  # conversion/serialisation failures are reported, not tracebacks
        detail = " ".join(str(error).split())[:200] or type(error).__name__
        raise ExportError(f"{what} export failed ({type(error).__name__}: {detail}); nothing was "
                          "written. Check the model loads with `mpanet-tf eval`, or report the error") from error
